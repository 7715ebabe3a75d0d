//! Reconciliation against real parts: a local server that answers like Twenty's REST API
//! (`tests/support/fake_twenty.py`), moto's SQS and DynamoDB, the ingest function's core
//! for the webhooks Twenty did deliver, and the worker forwarding to a local destination.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use support::destination::Destination;
use support::twenty::{API_KEY, FakeTwenty};
use support::*;
use twenty_webhook::aws::{DynamoLedger, DynamoSeen, DynamoWatermarks, SqsTransport};
use twenty_webhook::envelope::Destination as Target;
use twenty_webhook::ingest::config::AckMode;
use twenty_webhook::reconcile::change::Context;
use twenty_webhook::reconcile::run::Watermarks;
use twenty_webhook::reconcile::setup::Table;
use twenty_webhook::reconcile::window::{self, Window};
use twenty_webhook::reconcile::{ApiKey, Mode, Object, ObjectReport, Reconciler, TwentyApi};
use twenty_webhook::secrets::Rotating;
use twenty_webhook::worker::Forwarder;
use twenty_webhook::worker::Worker;
use twenty_webhook::worker::rules::parse_rules;

fn api(twenty: &FakeTwenty) -> TwentyApi {
    TwentyApi::new(
        &twenty.url,
        Rotating::fixed(ApiKey::parse(API_KEY).unwrap()),
        6_000,
    )
    .unwrap()
}

async fn table(name: &str) -> Table {
    let shared = sdk_config(moto_endpoint()).await;
    Table::Dynamo {
        seen: DynamoSeen::with_sdk_config(&shared, name),
        watermarks: DynamoWatermarks::with_sdk_config(&shared, name),
    }
}

async fn watermarks(name: &str) -> DynamoWatermarks {
    DynamoWatermarks::with_sdk_config(&sdk_config(moto_endpoint()).await, name)
}

async fn reconcile(
    twenty: &FakeTwenty,
    queue: &str,
    table: &Table,
    mode: Mode,
    deadline: tokio::time::Instant,
) -> (Vec<ObjectReport>, Vec<Object>) {
    let api = api(twenty);
    let objects: Vec<Object> = api
        .objects(deadline)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, by_default)| *by_default)
        .map(|(o, _)| o)
        .collect();
    let transport = SqsTransport::with_sdk_config(&sdk_config(moto_endpoint()).await, queue);
    let reconciler = Reconciler {
        api: &api,
        transport: &transport,
        table,
        context: Context {
            received_at: "2026-11-27T00:00:00.000Z",
            workspace_id: Some("ws-1"),
            destination: Target::default(),
        },
        dry_run: false,
        deadline,
        page_limit: 1000,
    };
    (reconciler.run(&objects, mode, |_| {}).await, objects)
}

fn backfill() -> Mode {
    let now = SystemTime::now();
    Mode::Backfill(Window {
        since: now - Duration::from_secs(3600),
        until: now + Duration::from_secs(60),
    })
}

fn far() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(120)
}

/// A webhook as Twenty sends it for `row`.
fn webhook(event: &str, object: &str, row: &Value) -> String {
    json!({
        "targetUrl": "https://example.com/hook", "eventName": event,
        "objectMetadata": {"id": format!("om-{object}"), "nameSingular": object},
        "workspaceId": "ws-1", "webhookId": "wh-1", "eventDate": row["updatedAt"], "record": row
    })
    .to_string()
}

/// Plays the event source: everything in the queue, to the worker, until it is empty; a
/// message reported failed (another copy of its change in progress, say) is handed over
/// again, as SQS would after its visibility timeout.
async fn work_off(worker: &Worker, queue: &str) -> usize {
    let sqs = sqs().await;
    let mut handled = 0;
    let mut retry: Vec<(String, String)> = Vec::new();
    for _ in 0..20 {
        let mut records: Vec<(String, String)> = std::mem::take(&mut retry);
        records.extend(
            drain(&sqs, queue, Duration::from_millis(300))
                .await
                .iter()
                .map(|m| {
                    (
                        m.message_id().unwrap().to_owned(),
                        m.body().unwrap().to_owned(),
                    )
                }),
        );
        if records.is_empty() {
            return handled;
        }
        let refs: Vec<(&str, &str, Option<&str>)> = records
            .iter()
            .map(|(id, body)| (id.as_str(), body.as_str(), None))
            .collect();
        let answer = worker.handle(sqs_event(&refs, false)).await.unwrap();
        let failed: Vec<&str> = answer
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        handled += records.len() - failed.len();
        retry = records
            .iter()
            .filter(|(id, _)| failed.contains(&id.as_str()))
            .cloned()
            .collect();
        if !retry.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    panic!("the queue did not empty");
}

/// What the destination took, as (record id, the change: updatedAt or deleted:deletedAt).
fn changes_at(destination: &Destination) -> HashMap<(String, String), usize> {
    let mut seen = HashMap::new();
    for request in destination.requests() {
        let envelope: Value = serde_json::from_str(&request.body).unwrap();
        let record = &envelope["record"];
        let stamp = match record["deletedAt"].as_str() {
            Some(d) => format!("deleted:{d}"),
            None => record["updatedAt"].as_str().unwrap().to_owned(),
        };
        *seen
            .entry((envelope["recordId"].as_str().unwrap().to_owned(), stamp))
            .or_insert(0) += 1;
    }
    seen
}

async fn worker(table: &str, destination: &Destination) -> Worker {
    let rules = format!(
        r#"[{{"name":"crm","events":["*"],"url":"{}"}}]"#,
        destination.url
    );
    let router = Forwarder::default()
        .router(parse_rules(&rules).unwrap())
        .unwrap();
    let sdk = sdk_config(moto_endpoint()).await;
    Worker::builder(
        router,
        None,
        Arc::new(DynamoLedger::with_sdk_config(
            &sdk,
            table,
            Duration::from_secs(120),
        )),
        // One message at a time: moto applies two concurrent conditional writes to one
        // item without DynamoDB's atomicity, so two copies of one change handled at once
        // could both pass it under load. What is checked here is that the ledger keys a
        // change delivered and reconciled as one; `tests/worker.rs` races two workers.
        1,
    )
    .build()
}

/// The scenario that matters: changes in Twenty, some delivered as signed webhooks through
/// the ingest function, the rest "dropped by the rate limit"; the reconciler queues what
/// the worker has not taken, and the worker with its table acts on every change once.
#[tokio::test]
async fn every_change_reaches_the_destination_once_delivered_or_not() {
    let twenty = FakeTwenty::start();
    let mut people = Vec::new();
    for i in 0..6 {
        people.push(
            twenty
                .upsert(
                    "people",
                    json!({"id": format!("p{i}"), "name": {"firstName": format!("P{i}")}}),
                )
                .await,
        );
    }
    let company = twenty
        .upsert("companies", json!({"id": "c0", "name": "Acme"}))
        .await;
    let p1_updated = twenty
        .upsert(
            "people",
            json!({"id": "p1", "name": {"firstName": "Renamed"}}),
        )
        .await;
    twenty.delete("people", "p2").await;

    // Delivered: p0 created, p1's update, the company; everything else was dropped.
    let h = Harness::new(false, AckMode::AfterEnqueue).await;
    for (event, object, row) in [
        ("person.created", "person", &people[0]),
        ("person.updated", "person", &p1_updated),
        ("company.created", "company", &company),
    ] {
        let body = webhook(event, object, row);
        let (status, answer) = h.post(&twenty_headers(&body), &body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let name = new_table().await;
    let destination = Destination::ok().await;
    let w = worker(&name, &destination).await;
    assert_eq!(work_off(&w, &h.url).await, 3);

    let table = table(&name).await;
    let (reports, objects) = reconcile(&twenty, &h.url, &table, backfill(), far()).await;
    let plural: Vec<&str> = objects.iter().map(|o| o.plural.as_str()).collect();
    assert_eq!(
        plural,
        ["people", "companies", "opportunities"],
        "active, not system"
    );
    let people_report = &reports[0];
    // Changed pass: p0, p1, p3, p4, p5; deleted pass: p2. p0 and p1 were delivered.
    assert_eq!(
        (people_report.read, people_report.seen, people_report.queued),
        (6, 2, 4)
    );
    assert_eq!(
        (reports[1].read, reports[1].seen, reports[1].queued),
        (1, 1, 0)
    );
    assert!(reports.iter().all(|r| r.complete));
    assert_eq!(work_off(&w, &h.url).await, 4);

    let taken = changes_at(&destination);
    assert_eq!(taken.len(), 7, "{taken:?}");
    assert!(
        taken.values().all(|n| *n == 1),
        "each change once: {taken:?}"
    );
    assert!(
        taken
            .keys()
            .any(|(id, stamp)| id == "p2" && stamp.starts_with("deleted:"))
    );
    let p1_stamp = p1_updated["updatedAt"].as_str().unwrap().to_owned();
    assert!(taken.contains_key(&("p1".to_owned(), p1_stamp)));

    // Reconciled again: everything is seen, nothing queued, nothing forwarded.
    let (again, _) = reconcile(&twenty, &h.url, &table, backfill(), far()).await;
    assert!(again.iter().all(|r| r.queued == 0));
    assert_eq!(work_off(&w, &h.url).await, 0);
    assert_eq!(destination.requests().len(), 7);
}

/// Seven people, served two to a page.
async fn seven_people_in_pages_of_two() -> FakeTwenty {
    let twenty = FakeTwenty::start();
    twenty.configure(json!({"limit_cap": 2})).await;
    for i in 0..7 {
        twenty
            .upsert("people", json!({"id": format!("p{i}")}))
            .await;
    }
    twenty
}

/// A scheduled run that stops half-way (Twenty failing until its deadline) keeps its
/// watermark where it got to; the rerun goes on from there, and the worker acts on every
/// change once.
#[tokio::test]
async fn a_run_stopped_half_way_loses_and_repeats_nothing() {
    let twenty = seven_people_in_pages_of_two().await;
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let name = new_table().await;
    let table = table(&name).await;
    let scheduled = || Mode::Scheduled {
        now: SystemTime::now() + Duration::from_secs(1),
        overlap: Duration::ZERO,
        settle: Duration::ZERO,
        first_lookback: Duration::from_secs(3600),
    };
    // Two pages served, then an outage: the run stops at its deadline.
    twenty.configure(json!({"fail_after_lists": 2})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    let (first, _) = reconcile(&twenty, &queue, &table, scheduled(), deadline).await;
    assert!(!first[0].complete);
    assert_eq!((first[0].read, first[0].queued), (4, 4));
    let ledger = watermarks(&name).await;
    let mark = ledger
        .watermark("people")
        .await
        .unwrap()
        .expect("a watermark");
    assert!(window::parse(&mark).is_some());

    // Twenty is back: the rerun starts at the watermark.
    twenty.configure(json!({"fail_after_lists": 0})).await;
    let (second, _) = reconcile(&twenty, &queue, &table, scheduled(), far()).await;
    assert!(second[0].complete);
    assert!(second[0].read < 7, "it did not start over: {second:?}");

    let destination = Destination::ok().await;
    let w = worker(&name, &destination).await;
    work_off(&w, &queue).await;
    let taken = changes_at(&destination);
    assert_eq!(taken.len(), 7, "nothing lost: {taken:?}");
    assert!(
        taken.values().all(|n| *n == 1),
        "nothing repeated: {taken:?}"
    );
    let end = ledger.watermark("people").await.unwrap().unwrap();
    assert!(end > mark, "the watermark moved to the window's end");
}

fn command(twenty_url: &str, key: &str, queue: &str) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_twenty-reconcile"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TWENTY_API_URL", twenty_url)
        .env("TWENTY_API_KEY", key)
        .env("QUEUE_URL", queue)
        .env("TWENTY_API_REQUESTS_PER_MINUTE", "6000")
        .env("AWS_ENDPOINT_URL_SQS", moto_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    c
}

fn since() -> String {
    window::timestamp(SystemTime::now() - Duration::from_secs(3600))
}

#[tokio::test]
async fn a_wrong_key_url_or_object_fails_with_which_and_queues_nothing() {
    let twenty = FakeTwenty::start();
    twenty.upsert("people", json!({"id": "p0"})).await;
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    for (url, key, objects, says) in [
        (twenty.url.as_str(), "wrong-key", "people", "TWENTY_API_KEY"),
        (closed.as_str(), API_KEY, "people", "TWENTY_API_URL"),
        (twenty.url.as_str(), API_KEY, "people,nopes", "\"nopes\""),
    ] {
        let out = command(url, key, &queue)
            .args(["--since", &since(), "--objects", objects])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(says), "{says} in {stderr}");
        assert!(!stderr.contains("wrong-key"), "the key is never printed");
    }
    assert!(
        drain(&sqs, &queue, Duration::from_millis(300))
            .await
            .is_empty()
    );
}

/// Throttled twice, the list envelope of older servers, three pages with cursors full of
/// `+`, `/` and `=`: the command goes on and says what it did.
#[tokio::test]
async fn the_command_backs_off_pages_on_and_sums_up() {
    let twenty = FakeTwenty::start();
    twenty
        .configure(json!({"limit_cap": 2, "metadata_envelope": "list", "fail_next": [429, 429]}))
        .await;
    for i in 0..5 {
        twenty
            .upsert("companies", json!({"id": format!("c{i}")}))
            .await;
    }
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let out = command(&twenty.url, API_KEY, &queue)
        .args(["--since", &since()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("companies read 5 queued 5 seen 0"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("pets") && !stdout.contains("timelineActivities"),
        "{stdout}"
    );
    let stats = twenty.stats().await;
    assert_eq!(stats["throttled"], 2);
    let queued = drain(&sqs, &queue, Duration::from_secs(1)).await;
    assert_eq!(queued.len(), 5);
    let envelope = envelope(&queued[0]);
    assert_eq!(
        (envelope["version"].as_u64(), envelope["origin"].as_str()),
        (Some(2), Some("reconciliation"))
    );

    // A dry run reads and queues nothing.
    let out = command(&twenty.url, API_KEY, &queue)
        .args(["--since", &since(), "--objects", "companies", "--dry-run"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("dry run"));
    assert!(
        drain(&sqs, &queue, Duration::from_millis(300))
            .await
            .is_empty()
    );
}

/// The command, scheduled, killed (SIGKILL) half-way while Twenty fails: the rerun goes on
/// from the watermark the killed run left, and the worker acts on every change once.
#[tokio::test]
async fn a_killed_scheduled_run_is_taken_up_by_the_next() {
    let twenty = seven_people_in_pages_of_two().await;
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let name = new_table().await;
    let scheduled = |c: &mut std::process::Command| {
        c.args(["--scheduled", "--objects", "people"])
            .env("IDEMPOTENCY_TABLE", &name)
            .env("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint())
            .env("RECONCILE_OVERLAP_SECS", "0")
            .env("RECONCILE_SETTLE_SECS", "0");
    };
    twenty.configure(json!({"fail_after_lists": 2})).await;
    let mut first = command(&twenty.url, API_KEY, &queue);
    scheduled(&mut first);
    let mut child = first
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ledger = watermarks(&name).await;
    let mut mark = None;
    for _ in 0..100 {
        mark = ledger.watermark("people").await.unwrap();
        if mark.is_some() && twenty.stats().await["requests"].as_u64() > Some(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mark = mark.expect("the killed run left a watermark");

    twenty.configure(json!({"fail_after_lists": 0})).await;
    let mut second = command(&twenty.url, API_KEY, &queue);
    scheduled(&mut second);
    let out = second.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let end = ledger.watermark("people").await.unwrap().unwrap();
    assert!(end > mark, "{mark} then {end}");

    let destination = Destination::ok().await;
    let w = worker(&name, &destination).await;
    work_off(&w, &queue).await;
    let taken = changes_at(&destination);
    assert_eq!(taken.len(), 7, "nothing lost: {taken:?}");
    assert!(
        taken.values().all(|n| *n == 1),
        "nothing repeated: {taken:?}"
    );
}

fn scheduled_now() -> Mode {
    Mode::Scheduled {
        now: SystemTime::now() + Duration::from_secs(1),
        overlap: Duration::ZERO,
        settle: Duration::ZERO,
        first_lookback: Duration::from_secs(3600),
    }
}

/// A row that cannot be queued (over SQS's 1 MiB with no bucket for claim checks) is
/// skipped, named in the log by its record, and passed by the watermark: the rows around
/// it are queued, and the next run does not stop at it again.
#[tokio::test]
async fn a_row_that_cannot_be_queued_is_skipped_and_the_watermark_passes_it() {
    let twenty = FakeTwenty::start();
    twenty.upsert("people", json!({"id": "p0"})).await;
    let p1_at = twenty
        .upsert("people", json!({"id": "p1", "note": "x".repeat(1_100_000)}))
        .await["updatedAt"]
        .as_str()
        .unwrap()
        .to_owned();
    twenty.upsert("people", json!({"id": "p2"})).await;
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let name = new_table().await;
    let table = table(&name).await;
    let (reports, _) = reconcile(&twenty, &queue, &table, scheduled_now(), far()).await;
    let people = &reports[0];
    assert_eq!(
        (people.read, people.queued, people.skipped),
        (3, 2, 1),
        "{people:?}"
    );
    assert!(people.complete && people.failure.is_none(), "{people:?}");
    let queued: Vec<String> = drain(&sqs, &queue, Duration::from_secs(1))
        .await
        .iter()
        .map(|m| envelope(m)["recordId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(queued.len(), 2);
    assert!(queued.contains(&"p0".into()) && queued.contains(&"p2".into()));

    let ledger = watermarks(&name).await;
    let mark = ledger.watermark("people").await.unwrap().unwrap();
    assert!(mark > p1_at, "{mark} passed {p1_at}");
    // Past the first run's window end (a second ahead of it), one more change.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    twenty.upsert("people", json!({"id": "p3"})).await;
    let (again, _) = reconcile(&twenty, &queue, &table, scheduled_now(), far()).await;
    assert!(again[0].complete && again[0].failure.is_none(), "{again:?}");
    assert_eq!(
        (again[0].queued, again[0].skipped),
        (1, 0),
        "only the new change: {again:?}"
    );
}

/// One object Twenty will not list for this key (403) is reported; the objects after it are
/// still read, queued and their watermarks moved, and the command ends 1 naming it.
#[tokio::test]
async fn one_object_that_fails_leaves_the_others_read_and_the_command_names_it() {
    let twenty = FakeTwenty::start();
    twenty.upsert("people", json!({"id": "p0"})).await;
    twenty.upsert("companies", json!({"id": "c0"})).await;
    twenty.upsert("opportunities", json!({"id": "o0"})).await;
    twenty.configure(json!({"forbidden": ["companies"]})).await;
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let name = new_table().await;
    let out = command(&twenty.url, API_KEY, &queue)
        .arg("--scheduled")
        .env("IDEMPOTENCY_TABLE", &name)
        .env("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint())
        .env("RECONCILE_OVERLAP_SECS", "0")
        .env("RECONCILE_SETTLE_SECS", "0")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("objects failed: companies: Twenty refused TWENTY_API_KEY (403)"),
        "{stderr}"
    );
    assert!(stdout.contains("people read 1 queued 1"), "{stdout}");
    assert!(
        stdout.contains("companies read 0 queued 0 seen 0 skipped 0 (failed)"),
        "{stdout}"
    );
    assert!(stdout.contains("opportunities read 1 queued 1"), "{stdout}");
    assert_eq!(drain(&sqs, &queue, Duration::from_secs(1)).await.len(), 2);
    let ledger = watermarks(&name).await;
    assert!(ledger.watermark("opportunities").await.unwrap().is_some());
    assert!(ledger.watermark("companies").await.unwrap().is_none());
}

/// Twenty answering 429 to everything until the run's time is up: no progress, which is a
/// failure (exit 3, saying so), not a quiet success.
#[tokio::test]
async fn a_run_twenty_throttles_throughout_is_no_progress() {
    let twenty = FakeTwenty::start();
    twenty.upsert("people", json!({"id": "p0"})).await;
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    // The object list is read; every request after it is throttled.
    let api = api(&twenty);
    let objects: Vec<Object> = api
        .objects(far())
        .await
        .unwrap()
        .into_iter()
        .filter(|(o, _)| o.plural == "people")
        .map(|(o, _)| o)
        .collect();
    twenty.configure(json!({"always": 429})).await;
    let transport = SqsTransport::with_sdk_config(&sdk_config(moto_endpoint()).await, &queue);
    let reconciler = Reconciler {
        api: &api,
        transport: &transport,
        table: &twenty_webhook::reconcile::NoTable,
        context: Context {
            received_at: "2026-11-27T00:00:00.000Z",
            workspace_id: None,
            destination: Target::default(),
        },
        dry_run: false,
        deadline: tokio::time::Instant::now() + Duration::from_secs(3),
        page_limit: 1000,
    };
    let reports = reconciler.run(&objects, backfill(), |_| {}).await;
    let verdict = twenty_webhook::reconcile::Verdict::of(&reports);
    assert!(verdict.failed(), "{verdict:?}");
    assert!(verdict.to_string().contains("no progress"), "{verdict}");
    assert!(api.throttled() >= 1);

    // The command says so and ends 3 (here its object list is throttled too).
    let out = command(&twenty.url, API_KEY, &queue)
        .args(["--since", &since()])
        .env("RECONCILE_TIME_LIMIT_SECS", "3")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no progress"), "{stderr}");
}

/// A list request that hangs is cut at the run's deadline, not at 30 s: the command with a
/// 2 s limit ends in a few seconds, as stopped with no progress.
#[tokio::test]
async fn no_request_outlasts_the_run() {
    let twenty = FakeTwenty::start();
    twenty.upsert("people", json!({"id": "p0"})).await;
    twenty.configure(json!({"hang_lists_secs": 25})).await;
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let started = std::time::Instant::now();
    let out = command(&twenty.url, API_KEY, &queue)
        .args(["--since", &since(), "--objects", "people"])
        .env("RECONCILE_TIME_LIMIT_SECS", "2")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no progress"), "{stderr}");
    // Far below the hang (25 s) and the request time-out (30 s).
    assert!(took < Duration::from_secs(15), "{took:?}");
}

/// A change the worker took whose seen mark was lost (a write that failed): reconciliation
/// reads the records of the handlers that listen to it, finds them done, and does not queue
/// it again. Without the worker's published handlers it would.
#[tokio::test]
async fn a_lost_seen_mark_is_made_up_for_by_the_handlers_records() {
    let twenty = FakeTwenty::start();
    let row = twenty.upsert("people", json!({"id": "p0"})).await;
    let h = Harness::new(false, AckMode::AfterEnqueue).await;
    let body = webhook("person.created", "person", &row);
    let (status, answer) = h.post(&twenty_headers(&body), &body).await;
    assert_eq!(status, 200, "{answer}");
    let name = new_table().await;
    let destination = Destination::ok().await;
    let w = worker(&name, &destination).await;
    assert_eq!(work_off(&w, &h.url).await, 1);

    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config(moto_endpoint()).await);
    let delete = |id: String| {
        dynamodb
            .delete_item()
            .table_name(&name)
            .key("id", aws_sdk_dynamodb::types::AttributeValue::S(id))
            .send()
    };
    let change = format!("person:p0@{}", row["updatedAt"].as_str().unwrap());
    delete(format!("seen#{change}")).await.unwrap();
    let table = table(&name).await;
    let (reports, _) = reconcile(&twenty, &h.url, &table, backfill(), far()).await;
    assert_eq!((reports[0].seen, reports[0].queued), (1, 0), "{reports:?}");

    delete("routes#worker".into()).await.unwrap();
    let (reports, _) = reconcile(&twenty, &h.url, &table, backfill(), far()).await;
    assert_eq!((reports[0].seen, reports[0].queued), (0, 1), "{reports:?}");
    // The worker still acts on it once: its handler's record says done.
    assert_eq!(work_off(&w, &h.url).await, 1);
    assert_eq!(destination.requests().len(), 1);
}

/// A change a worker has in hand (its record in progress: the worker died after sending,
/// or is sending now) is not queued again: its message is still in the queue and will be
/// tried until done or moved, and a twin could reach the destination under a second id
/// once the in-progress mark runs out.
#[tokio::test]
async fn a_change_in_hand_is_not_queued_again() {
    let twenty = FakeTwenty::start();
    let row = twenty.upsert("people", json!({"id": "p0"})).await;
    let h = Harness::new(false, AckMode::AfterEnqueue).await;
    let name = new_table().await;
    let destination = Destination::ok().await;
    // The worker publishes its handlers on its first message.
    let w = worker(&name, &destination).await;
    let other = twenty.upsert("people", json!({"id": "p1"})).await;
    let body = webhook("person.created", "person", &other);
    assert_eq!(h.post(&twenty_headers(&body), &body).await.0, 200);
    assert_eq!(work_off(&w, &h.url).await, 1);

    // p0's change begun by a worker that then died: in progress, no seen mark.
    let change = format!("person:p0@{}", row["updatedAt"].as_str().unwrap());
    let ledger = twenty_webhook::aws::DynamoLedger::with_sdk_config(
        &sdk_config(moto_endpoint()).await,
        &name,
        Duration::from_secs(120),
    );
    use twenty_webhook::worker::{Ledger, Mode};
    ledger
        .begin(&format!("{change}#crm"), Some("m0"), Mode::Strict)
        .await
        .unwrap();
    let table = table(&name).await;
    let (reports, _) = reconcile(&twenty, &h.url, &table, backfill(), far()).await;
    assert_eq!((reports[0].seen, reports[0].queued), (2, 0), "{reports:?}");
}
