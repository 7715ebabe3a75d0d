//! The worker against real parts: SQS events shaped as Lambda sends them, local HTTP
//! destinations, moto's S3 (claim checks) and DynamoDB (idempotency), and the Python
//! `standardwebhooks` package verifying what was forwarded.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::destination::{Answer, Destination};
use support::*;
use twenty_webhook::aws::{DynamoLedger, LazySdk, PayloadStore, SqsVisibility, target_clients};
use twenty_webhook::envelope::{Destination as Target, Message};
use twenty_webhook::worker::Forwarder;
use twenty_webhook::worker::rules::parse_rules;
use twenty_webhook::worker::{Ledger, Mode, NoLedger};
use twenty_webhook::worker::{Worker, WorkerBuilder};

const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn twenty(event: &str, record_id: &str) -> String {
    format!(
        r#"{{"eventName":"{event}","workspaceId":"ws","record":{{"id":"{record_id}","name":{{"firstName":"Zoë"}}}}}}"#
    )
}

fn one(event: &str, record_id: &str) -> Message {
    ingest_messages(&twenty(event, record_id), Target::default()).remove(0)
}

async fn worker_with(rules: &str, ledger: impl Ledger) -> WorkerBuilder {
    worker_in(Forwarder::default(), rules, ledger).await
}

/// `worker_with`, its rules made by `forwarder`.
async fn worker_in(forwarder: Forwarder, rules: &str, ledger: impl Ledger) -> WorkerBuilder {
    let router = forwarder
        .router(parse_rules(rules).expect("valid rules"))
        .expect("a router");
    let sdk = sdk_config(moto_endpoint()).await;
    Worker::builder(
        router,
        Some(PayloadStore::with_sdk_config(&sdk)),
        Arc::new(ledger),
        10,
    )
}

async fn worker(rules: &str) -> WorkerBuilder {
    worker_with(rules, NoLedger).await
}

#[tokio::test]
async fn forwards_signed_envelopes_that_standardwebhooks_verifies() {
    let people = Destination::ok().await;
    let deletions = Destination::ok().await;
    let rules = format!(
        r#"[{{"name":"people","events":["person.*"],"url":"{}","secret":"{KEY}","headers":{{"Authorization":"Bearer t"}}}},
            {{"name":"deletions","events":["*.deleted"],"url":"{}"}}]"#,
        people.url, deletions.url
    );
    let w = worker(&rules).await.build();
    let (a, b, c, d) = (
        one("person.created", "p1"),
        one("company.deleted", "c1"),
        one("person.deleted", "p2"),
        one("note.created", "n1"),
    );
    let event = sqs_event(
        &[
            ("m1", &a.body, None),
            ("m2", &b.body, None),
            ("m3", &c.body, None),
            ("m4", &d.body, None),
        ],
        false,
    );
    let response = w.handle(event).await.unwrap();
    assert!(failed(&response).is_empty(), "{response:?}");

    let got = people.requests();
    assert_eq!(got.len(), 2);
    for request in &got {
        let sent = [&a, &c]
            .into_iter()
            .find(|m| m.id == request.headers["webhook-id"])
            .unwrap();
        assert_eq!(request.body, sent.body, "the envelope bytes as queued");
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(request.headers["authorization"], "Bearer t");
        support::standard_webhooks_verify(KEY, &request.body, &request.headers)
            .expect("standardwebhooks verifies the forward");
    }
    let got = deletions.requests();
    let mut ids: Vec<&str> = got
        .iter()
        .map(|r| r.headers["webhook-id"].as_str())
        .collect();
    ids.sort();
    let mut want = [b.id.as_str(), c.id.as_str()];
    want.sort();
    assert_eq!(ids, want);
    assert!(
        got.iter()
            .all(|r| !r.headers.contains_key("webhook-signature"))
    );
}

/// A rule's transform is what is sent and what is signed, with the Content-Type of what
/// it gives: a flat JSON body, or text.
#[tokio::test]
async fn a_transformed_body_is_sent_signed_with_its_content_type() {
    let flat = Destination::ok().await;
    let text = Destination::ok().await;
    let rules = serde_json::json!([
        {"name": "flat", "events": ["person.*"], "url": flat.url, "secret": KEY,
         "transform": {"inputPathsMap": {"id": "$.record.id", "event": "$.eventName", "none": "$.record.nothing"},
                       "inputTemplate": "{\"id\": <id>, \"event\": \"<event>\", \"none\": <none>}"}},
        {"name": "text", "events": ["person.*"], "url": text.url, "secret": KEY,
         "transform": {"inputPathsMap": {"id": "$.record.id"}, "inputTemplate": "person <id> changed"}}
    ])
    .to_string();
    let w = worker(&rules).await.build();
    let m = one("person.created", "p7");
    let response = w
        .handle(sqs_event(&[("m1", &m.body, None)], false))
        .await
        .unwrap();
    assert!(failed(&response).is_empty(), "{response:?}");
    let got = flat.requests();
    assert_eq!(got.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"id": "p7", "event": "person.created", "none": null})
    );
    assert_eq!(got[0].headers["content-type"], "application/json");
    assert_eq!(got[0].headers["webhook-id"], m.id);
    support::standard_webhooks_verify(KEY, &got[0].body, &got[0].headers)
        .expect("standardwebhooks verifies the transformed body");
    let got = text.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, r#"person "p7" changed"#);
    assert_eq!(got[0].headers["content-type"], "text/plain; charset=utf-8");
    support::standard_webhooks_verify(KEY, &got[0].body, &got[0].headers)
        .expect("standardwebhooks verifies a text body too");
}

#[tokio::test]
async fn one_bad_message_fails_alone() {
    let dest = Destination::ok().await;
    let w = worker(&format!(r#"[{{"events":["*"],"url":"{}"}}]"#, dest.url))
        .await
        .build();
    let good = one("person.created", "p1");
    let unknown = good.body.replacen(r#""version":1"#, r#""version":3"#, 1);
    let event = sqs_event(
        &[
            ("good", &good.body, None),
            ("poison", "this is not an envelope", None),
            ("future", &unknown, None),
            ("empty", "", None),
        ],
        false,
    );
    let response = w.handle(event).await.unwrap();
    assert_eq!(failed(&response), ["poison", "future", "empty"]);
    assert_eq!(dest.requests().len(), 1);
}

#[tokio::test]
async fn unrouted_events_succeed() {
    let dest = Destination::ok().await;
    let w = worker(&format!(r#"[{{"events":["pet.*"],"url":"{}"}}]"#, dest.url))
        .await
        .build();
    let m = one("person.created", "p1");
    let response = w
        .handle(sqs_event(&[("m", &m.body, None)], false))
        .await
        .unwrap();
    assert!(failed(&response).is_empty());
    assert!(dest.requests().is_empty());
}

#[tokio::test]
async fn destinations_that_fail_fail_the_message() {
    let cases: Vec<(&str, Answer)> = vec![
        ("500", Answer::status(500)),
        ("404", Answer::status(404)),
        (
            "redirect",
            Answer {
                headers: vec![("location".into(), "http://127.0.0.1:9/elsewhere".into())],
                ..Answer::status(302)
            },
        ),
        (
            "slow",
            Answer {
                delay: Duration::from_secs(3),
                ..Answer::status(200)
            },
        ),
        ("created", Answer::status(201)),
    ];
    for (name, answer) in cases {
        let dest = Destination::start(move |_| answer.clone()).await;
        let w = worker(&format!(
            r#"[{{"events":["*"],"url":"{}","timeoutMs":500}}]"#,
            dest.url
        ))
        .await
        .build();
        let m = one("person.created", name);
        let response = w
            .handle(sqs_event(&[(name, &m.body, None)], false))
            .await
            .unwrap();
        let expected: &[&str] = if name == "created" { &[] } else { &[name] };
        assert_eq!(failed(&response), expected, "{name}");
        assert_eq!(
            dest.requests().len(),
            1,
            "{name}: tried once, redirect not followed"
        );
    }
    // Nobody listening at all.
    let w = worker(r#"[{"events":["*"],"url":"http://127.0.0.1:9/nobody"}]"#)
        .await
        .build();
    let m = one("person.created", "x");
    let response = w
        .handle(sqs_event(&[("down", &m.body, None)], false))
        .await
        .unwrap();
    assert_eq!(failed(&response), ["down"]);
}

#[tokio::test]
async fn a_fifo_group_stops_at_its_failure_while_another_goes_on() {
    // The destination refuses record a-0's event.
    let dest = Destination::start(|r| {
        Answer::status(if r.body.contains(r#""recordId":"a-0""#) {
            500
        } else {
            200
        })
    })
    .await;
    let w = worker(&format!(r#"[{{"events":["*"],"url":"{}"}}]"#, dest.url))
        .await
        .build();
    let fifo = Target {
        fifo: true,
        payload_bucket: None,
    };
    let a0 = ingest_messages(&twenty("person.created", "a-0"), fifo).remove(0);
    let a1 =
        ingest_messages(&twenty("person.updated", "a-0").replace("Zoë", "Zoé"), fifo).remove(0);
    let b0 = ingest_messages(&twenty("person.created", "b-0"), fifo).remove(0);
    let b1 =
        ingest_messages(&twenty("person.updated", "b-0").replace("Zoë", "Zoé"), fifo).remove(0);
    let group = |m: &Message| m.fifo.as_ref().unwrap().group_id.clone();
    let (ga, gb) = (group(&a0), group(&b0));
    let event = sqs_event(
        &[
            ("a0", &a0.body, Some(&ga)),
            ("b0", &b0.body, Some(&gb)),
            ("a1", &a1.body, Some(&ga)),
            ("b1", &b1.body, Some(&gb)),
        ],
        true,
    );
    let response = w.handle(event).await.unwrap();
    assert_eq!(failed(&response), ["a0", "a1"]);
    let ids: Vec<String> = dest
        .requests()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert!(ids.contains(&b0.id) && ids.contains(&b1.id));
    assert!(!ids.contains(&a1.id), "a1 waits for a0");
    let pos = |id: &str| ids.iter().position(|i| i == id).unwrap();
    assert!(pos(&b0.id) < pos(&b1.id));
}

/// A note too large for SQS, queued as a claim check into `bucket`.
fn big_note(bucket: &str) -> Message {
    let big = twenty("note.created", "n1").replace(
        r#""name":{"firstName":"Zoë"}"#,
        &format!(r#""body":"{}""#, "Zoë écrit. ".repeat(100_000)),
    );
    let target = Target {
        fifo: false,
        payload_bucket: Some(bucket),
    };
    ingest_messages(&big, target).remove(0)
}

#[tokio::test]
async fn a_claim_check_is_forwarded_as_the_stored_envelope() {
    let bucket = new_bucket().await;
    let dest = Destination::ok().await;
    let w = worker(&format!(
        r#"[{{"events":["*"],"url":"{}","secret":"{KEY}"}}]"#,
        dest.url
    ))
    .await
    .build();
    let m = big_note(&bucket);
    let claim = m.claim.clone().expect("a claim check");
    let store = PayloadStore::with_sdk_config(&sdk_config(moto_endpoint()).await);
    store.put(&claim).await.unwrap();

    let response = w
        .handle(sqs_event(&[("big", &m.body, None)], false))
        .await
        .unwrap();
    assert!(failed(&response).is_empty(), "{response:?}");
    let got = dest.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, claim.envelope);
    assert_eq!(got[0].headers["webhook-id"], m.id);
    support::standard_webhooks_verify(KEY, &got[0].body, &got[0].headers).unwrap();

    // A pointer whose object is missing, or does not match its hash, fails.
    let missing = m.body.replace(&claim.key, "twenty-webhook/missing.json");
    let tampered = twenty_webhook::envelope::Claim {
        envelope: claim.envelope.replace("écrit", "ecrit"),
        ..claim.clone()
    };
    store.put(&tampered).await.unwrap();
    let response = w
        .handle(sqs_event(
            &[("missing", &missing, None), ("tampered", &m.body, None)],
            false,
        ))
        .await
        .unwrap();
    assert_eq!(failed(&response), ["missing", "tampered"]);
}

async fn ledger(table: &str) -> DynamoLedger {
    DynamoLedger::with_sdk_config(
        &sdk_config(moto_endpoint()).await,
        table,
        Duration::from_secs(120),
    )
}

#[tokio::test]
async fn a_redelivery_repeats_only_the_destination_that_failed() {
    let table = new_table().await;
    let healthy = Destination::ok().await;
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = down.clone();
    let flaky = Destination::start(move |_| {
        Answer::status(if flag.load(Ordering::SeqCst) {
            503
        } else {
            200
        })
    })
    .await;
    let rules = format!(
        r#"[{{"name":"crm","events":["*"],"url":"{}"}},{{"name":"n8n","events":["*"],"url":"{}"}}]"#,
        healthy.url, flaky.url
    );
    let w = worker_with(&rules, ledger(&table).await).await.build();
    let m = one("person.updated", "p1");
    let event = || sqs_event(&[("m1", &m.body, None)], false);

    assert_eq!(failed(&w.handle(event()).await.unwrap()), ["m1"]);
    assert_eq!(failed(&w.handle(event()).await.unwrap()), ["m1"]);
    down.store(false, Ordering::SeqCst);
    assert!(failed(&w.handle(event()).await.unwrap()).is_empty());
    assert!(failed(&w.handle(event()).await.unwrap()).is_empty());
    assert_eq!(
        healthy.requests().len(),
        1,
        "the destination that took it is not repeated"
    );
    assert_eq!(
        flaky.requests().len(),
        3,
        "the failed one is retried until it takes it"
    );
}

/// A destination that answers after half a second: long enough for two workers to race.
async fn slow_destination() -> Destination {
    Destination::start(|_| Answer {
        delay: Duration::from_millis(500),
        ..Answer::status(200)
    })
    .await
}

/// Two workers, each with its own ledger on `table` and its rules made by `forwarder`,
/// handle one SQS message carrying `body` at once; how many of the two report it failed.
async fn race_on_one_message(
    forwarder: impl Fn() -> Forwarder,
    rules: &str,
    table: &str,
    body: &str,
) -> usize {
    let (w1, w2) = (
        worker_in(forwarder(), rules, ledger(table).await)
            .await
            .build(),
        worker_in(forwarder(), rules, ledger(table).await)
            .await
            .build(),
    );
    let event = || sqs_event(&[("m1", body, None)], false);
    let (r1, r2) = tokio::join!(w1.handle(event()), w2.handle(event()));
    failed(&r1.unwrap()).len() + failed(&r2.unwrap()).len()
}

/// `IDEMPOTENCY_MODE=strict`.
#[tokio::test]
async fn two_workers_racing_on_one_message_forward_it_once() {
    let table = new_table().await;
    let slow = slow_destination().await;
    let rules = format!(r#"[{{"events":["*"],"url":"{}"}}]"#, slow.url);
    let strict = || Forwarder::default().with_mode(Some(Mode::Strict));
    let m = one("person.updated", "p1");
    let failures = race_on_one_message(strict, &rules, &table, &m.body).await;
    assert_eq!(slow.requests().len(), 1, "forwarded once");
    assert_eq!(failures, 1, "the loser is retried later, and then skips it");
}

/// `IDEMPOTENCY_MODE=auto`, the default: an HTTP rule is guarded lean, so two workers
/// racing on one message may both send it, but under one webhook-id, the change's; an SQS
/// queue rule beside it (a queue cannot deduplicate) is guarded strict: sent once.
#[tokio::test]
async fn auto_guards_http_lean_and_a_queue_strict() {
    let table = new_table().await;
    let slow = slow_destination().await;
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let rules = format!(
        r#"[{{"name":"hook","events":["*"],"url":"{}"}},{{"name":"copy","events":["*"],"queueUrl":"{queue}"}}]"#,
        slow.url
    );
    let sdk = LazySdk::ready(sdk_config(moto_endpoint()).await);
    let auto = || Forwarder::default().with_clients(target_clients(&sdk, Default::default()));
    let changed = r#"{"eventName":"person.updated","workspaceId":"ws","record":{"id":"p1","updatedAt":"2026-12-04T10:00:00.000Z"}}"#;
    let m = ingest_messages(changed, Target::default()).remove(0);
    let failures = race_on_one_message(auto, &rules, &table, &m.body).await;
    let ids: Vec<String> = slow
        .requests()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert!((1..=2).contains(&ids.len()), "{ids:?}");
    assert!(
        ids.iter()
            .all(|id| id == &ids[0] && id.starts_with("change_")),
        "one id, the change's: {ids:?}"
    );
    assert_eq!(
        drain(&sqs, &queue, Duration::from_secs(2)).await.len(),
        1,
        "the queue is sent it once"
    );
    assert!(failures <= 1, "only a strict loser is retried later");
}

#[tokio::test]
async fn a_back_off_that_cannot_be_set_still_reports_the_failure() {
    let w = worker(r#"[{"events":["*"],"url":"http://127.0.0.1:9/nobody"}]"#)
        .await
        .with_visibility(SqsVisibility::with_sdk_config(
            &sdk_config(moto_endpoint()).await,
            Some(format!("{}/123456789012/no-such-queue", moto_endpoint())),
        ))
        .build();
    let m = one("person.created", "p1");
    let response = w
        .handle(sqs_event(&[("m1", &m.body, None)], false))
        .await
        .unwrap();
    assert_eq!(failed(&response), ["m1"]);
}

#[test]
fn the_worker_refuses_to_start_on_bad_rules_and_says_which() {
    // Exits 1, and what it printed.
    let start = |rules: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_twenty-worker"))
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
            .env("FORWARD_RULES", rules)
            .output()
            .expect("run twenty-worker");
        assert_eq!(out.status.code(), Some(1));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let text = start(
        r#"[{"name":"ok","events":["*"],"url":"https://x"},{"name":"n8n","events":["*"],"url":"https://y","secret":"hunter2"}]"#,
    );
    assert!(text.contains("rule 2 (n8n): `secret`"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    // A content filter that is not an event pattern: the rule and the problem, at start-up.
    let text = start(
        r#"[{"name":"won","events":["opportunity.updated"],"filter":{"record":{"stage":[{"regex":"W.N"}]}},"url":"https://x"}]"#,
    );
    assert!(
        text.contains("rule 1 (won): filter at `record.stage`: unknown operator `regex`"),
        "{text}"
    );
}

#[tokio::test]
async fn forwarding_rules_kept_in_ssm_are_read_on_first_need_and_follow_a_change() {
    use twenty_webhook::aws::AwsSecretStore;
    use twenty_webhook::secrets::{Location, Refresh, Rotating, StoredSecret};
    use twenty_webhook::worker::Router;
    use twenty_webhook::worker::rules::stored::{Routes, parse_stored_rules};

    let (first, second) = (Destination::ok().await, Destination::ok().await);
    let rule =
        |url: &str| format!(r#"[{{"name":"all","events":["*"],"url":"{url}","secret":"{KEY}"}}]"#);
    let sdk = sdk_config(moto_endpoint()).await;
    let name = format!("/twenty/rules-{}", std::process::id());
    put_secure_string(&name, &rule(&first.url)).await;
    let refresh = Refresh {
        every: Duration::from_secs(1),
        floor: Duration::from_millis(100),
        timeout: Duration::from_secs(3),
    };
    let stored = |location| StoredSecret {
        setting: "FORWARD_RULES_PARAMETER",
        location,
    };
    let store = Arc::new(AwsSecretStore::with_sdk_config(&sdk));
    let rules = Rotating::stored(
        store.clone(),
        stored(Location::Parameter(name.clone())),
        parse_stored_rules,
        refresh,
    );
    let w = Worker::builder(
        Routes::with_stored_rules(Router::new(), rules.clone(), Forwarder::default()),
        None,
        Arc::new(NoLedger),
        10,
    )
    .build();
    let batch = |id: &str| {
        let m = one("person.created", id);
        (m.body.clone(), sqs_event(&[(id, &m.body, None)], false))
    };
    let (body, event) = batch("a");
    assert!(failed(&w.handle(event).await.unwrap()).is_empty());
    let got = first.requests();
    assert_eq!(got.len(), 1);
    support::standard_webhooks_verify(KEY, &body, &got[0].headers).expect("verifies");

    // The rules change in the store: after the refresh interval the worker follows.
    put_secure_string(&name, &rule(&second.url)).await;
    tokio::time::sleep(refresh.every).await;
    let mut moved = false;
    for i in 0..50 {
        let (_, event) = batch(&format!("b{i}"));
        assert!(failed(&w.handle(event).await.unwrap()).is_empty());
        if !second.requests().is_empty() {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(moved, "the new rules were taken without a restart");

    // Rules that turn invalid after a good read: the last good ones stay in force, and
    // the routes say why the store's are not applied (the worker counts RulesNotApplied).
    let watched = Routes::with_stored_rules(Router::new(), rules.clone(), Forwarder::default());
    watched.current().await.expect("the good rules");
    assert_eq!(watched.not_applied(), None);
    put_secure_string(
        &name,
        r#"[{"name":"all","events":["*"],"url":"ftp://x","secret":"whsec_c2VjcmV0"}]"#,
    )
    .await;
    tokio::time::sleep(refresh.every).await;
    let mut why = None;
    for _ in 0..50 {
        watched
            .current()
            .await
            .expect("the last good rules stay in force");
        why = watched.not_applied();
        if why.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let why = why.expect("the invalid rules are reported");
    assert!(
        why.contains("FORWARD_RULES_PARAMETER") && !why.contains("c2VjcmV0"),
        "{why}"
    );
    let before = second.requests().len();
    let (_, event) = batch("d");
    assert!(failed(&w.handle(event).await.unwrap()).is_empty());
    assert_eq!(
        second.requests().len(),
        before + 1,
        "still the last good rules"
    );

    // Rules that cannot be read fail the batch's messages (retried), never the function.
    let missing = Rotating::stored(
        store,
        stored(Location::Parameter("/twenty/no-such-rules".into())),
        parse_stored_rules,
        refresh,
    );
    let w = Worker::builder(
        Routes::with_stored_rules(Router::new(), missing, Forwarder::default()),
        None,
        Arc::new(NoLedger),
        10,
    )
    .build();
    let (_, event) = batch("c");
    assert_eq!(failed(&w.handle(event).await.unwrap()), ["c"]);
}

#[tokio::test]
async fn a_deadline_shorter_than_the_margin_still_leaves_time_to_work() {
    let dest = Destination::ok().await;
    // The margin is 5 s by default; this invocation has 2 s in all.
    let w = worker(&format!(r#"[{{"events":["*"],"url":"{}"}}]"#, dest.url))
        .await
        .build();
    let m = one("person.created", "p1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let response = w
        .handle_until(sqs_event(&[("m1", &m.body, None)], false), Some(deadline))
        .await
        .unwrap();
    assert!(failed(&response).is_empty(), "{response:?}");
    assert_eq!(dest.requests().len(), 1);
}

/// A change dead-lettered for the only destination that refused it is recorded as seen:
/// reconciliation does not queue it again, to be refused and dead-lettered twice (a
/// redrive of the copy still runs it).
#[tokio::test]
async fn a_dead_lettered_change_is_not_reconciled_again() {
    use twenty_webhook::aws::{DynamoSeen, SqsDeadLetters};
    use twenty_webhook::reconcile::run::{Probe, SeenIndex};
    let table = new_table().await;
    let refusing = Destination::start(|_| Answer::status(400)).await;
    let rules = format!(
        r#"[{{"name":"crm","events":["*"],"url":"{}"}}]"#,
        refusing.url
    );
    let sdk = sdk_config(moto_endpoint()).await;
    let sqs = sqs().await;
    let dlq = new_queue(&sqs, false).await;
    let w = worker_with(&rules, ledger(&table).await)
        .await
        .with_dead_letters(SqsDeadLetters::with_sdk_config(&sdk, &dlq))
        .build();
    let body = r#"{"eventName":"person.updated","workspaceId":"ws","record":{"id":"p1","createdAt":"2026-11-01T00:00:00.000Z","updatedAt":"2026-11-02T00:00:00Z"}}"#;
    let m = ingest_messages(body, Target::default()).remove(0);
    let response = w
        .handle(sqs_event(&[("m1", &m.body, None)], false))
        .await
        .unwrap();
    assert!(failed(&response).is_empty(), "moved, so done");
    assert_eq!(drain(&sqs, &dlq, Duration::from_secs(1)).await.len(), 1);
    let change = "person:p1@2026-11-02T00:00:00.000Z".to_owned();
    let seen = DynamoSeen::with_sdk_config(&sdk, &table)
        .seen_among(&[Probe {
            key: change.clone(),
            event_name: "person.updated".into(),
        }])
        .await
        .unwrap();
    assert!(seen.contains(&change), "{seen:?}");
}

/// `event` as received `receives` times, first queued now (within the retry horizon; the
/// sample's own timestamp is long past it).
fn received_now(
    mut event: aws_lambda_events::event::sqs::SqsEvent,
    receives: u32,
) -> aws_lambda_events::event::sqs::SqsEvent {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    for record in &mut event.records {
        record
            .attributes
            .insert("SentTimestamp".into(), now.to_string());
        record
            .attributes
            .insert("ApproximateReceiveCount".into(), receives.to_string());
    }
    event
}

fn attribute_of<'a>(m: &'a aws_sdk_sqs::types::Message, name: &str) -> Option<&'a str> {
    m.message_attributes()?.get(name)?.string_value()
}

/// One FIFO message, two destinations refusing it at different receives: each gets its
/// own copy in the dead-letter queue. Under the received message's deduplication id the
/// second copy would be dropped by SQS (the first is still queued there).
#[tokio::test]
async fn every_dead_letter_copy_of_one_fifo_message_reaches_the_queue() {
    use twenty_webhook::aws::SqsDeadLetters;
    let table = new_table().await;
    let refusing = Destination::start(|_| Answer::status(400)).await;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let later = Destination::start(move |_| {
        Answer::status(if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            503
        } else {
            422
        })
    })
    .await;
    let rules = format!(
        r#"[{{"name":"a","events":["*"],"url":"{}"}},{{"name":"b","events":["*"],"url":"{}"}}]"#,
        refusing.url, later.url
    );
    let sdk = sdk_config(moto_endpoint()).await;
    let sqs = sqs().await;
    let dlq = new_queue(&sqs, true).await;
    let w = worker_with(&rules, ledger(&table).await)
        .await
        .with_dead_letters(SqsDeadLetters::with_sdk_config(&sdk, &dlq))
        .build();
    let m = one("person.updated", "p1");
    let event = |receives| received_now(sqs_event(&[("m1", &m.body, Some("g1"))], true), receives);

    let first = w.handle(event(1)).await.unwrap();
    assert_eq!(failed(&first), ["m1"], "b is retried");
    let second = w.handle(event(2)).await.unwrap();
    assert!(failed(&second).is_empty(), "{second:?}");
    let copies = drain(&sqs, &dlq, Duration::from_secs(2)).await;
    let mut named: Vec<&str> = copies
        .iter()
        .filter_map(|c| attribute_of(c, "failedDestination"))
        .collect();
    named.sort();
    assert_eq!(named, ["a", "b"], "one copy for each destination");
}

/// A destination that took an event is never in a dead-letter copy, and its done mark is
/// never replaced: past the horizon, `a` (done at the first receive) is held back by its
/// rate limit while `b` fails for good; the copy names `b` alone, and a redrive of it
/// does not reach `a` again.
#[tokio::test]
async fn a_destination_that_took_the_event_is_not_dead_lettered_or_redriven() {
    use twenty_webhook::aws::SqsDeadLetters;
    let table = new_table().await;
    let took = Destination::ok().await;
    let down = Destination::start(|_| Answer::status(503)).await;
    let rules = |paced: bool| {
        let pace = if paced {
            r#","maxPerSecond":0.001"#
        } else {
            ""
        };
        format!(
            r#"[{{"name":"a","events":["*"],"url":"{}"{pace}}},{{"name":"b","events":["*"],"url":"{}"}}]"#,
            took.url, down.url
        )
    };
    let sdk = sdk_config(moto_endpoint()).await;
    let sqs = sqs().await;
    let dlq = new_queue(&sqs, false).await;
    let w = worker_with(&rules(true), ledger(&table).await)
        .await
        .with_dead_letters(SqsDeadLetters::with_sdk_config(&sdk, &dlq))
        .build();
    let m = one("person.updated", "p1");

    let first = w
        .handle(received_now(sqs_event(&[("m1", &m.body, None)], false), 1))
        .await
        .unwrap();
    assert_eq!(failed(&first), ["m1"], "b is retried");
    assert_eq!(took.requests().len(), 1);
    // Received again past the horizon (the sample's own timestamp): `a` has no send slot.
    let second = w
        .handle(sqs_event(&[("m1", &m.body, None)], false))
        .await
        .unwrap();
    assert!(failed(&second).is_empty(), "{second:?}");
    let copies = drain(&sqs, &dlq, Duration::from_secs(2)).await;
    assert_eq!(copies.len(), 1);
    assert_eq!(attribute_of(&copies[0], "failedDestination"), Some("b"));

    // The copy redriven (another message id), to a worker with no limit on `a`.
    let redriven = worker_with(&rules(false), ledger(&table).await)
        .await
        .build();
    let _ = redriven
        .handle(sqs_event(&[("m2", copies[0].body().unwrap(), None)], false))
        .await
        .unwrap();
    assert_eq!(took.requests().len(), 1, "a took it once, and only once");
    assert!(down.requests().len() >= 3, "b is tried again");
}

/// A destination asking to be left alone for 14 hours: the message is held for what is
/// left of SQS's 12 hours since the receive, never 43,200 s asked after it (SQS refuses
/// that, and the message would come back after the queue's visibility timeout).
#[tokio::test]
async fn a_hold_longer_than_twelve_hours_is_cut_to_what_sqs_takes() {
    use support::counting_proxy::CountingProxy;
    let proxy = CountingProxy::start(moto_endpoint()).await;
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let busy = Destination::start(|_| Answer {
        headers: vec![("retry-after".into(), "50400".into())],
        ..Answer::status(429)
    })
    .await;
    let w = worker(&format!(r#"[{{"events":["*"],"url":"{}"}}]"#, busy.url))
        .await
        .with_visibility(SqsVisibility::with_sdk_config(
            &sdk_config(&proxy.url).await,
            Some(queue),
        ))
        .build();
    let m = one("person.created", "p1");
    let response = w
        .handle(received_now(sqs_event(&[("m1", &m.body, None)], false), 1))
        .await
        .unwrap();
    assert_eq!(failed(&response), ["m1"]);
    let asked: Vec<i64> = proxy
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(target, _)| target.ends_with("ChangeMessageVisibilityBatch"))
        .filter_map(|(_, body)| {
            let body: serde_json::Value = serde_json::from_str(body).ok()?;
            body["Entries"][0]["VisibilityTimeout"].as_i64()
        })
        .collect();
    assert_eq!(asked.len(), 1, "one visibility change: {asked:?}");
    assert!(
        asked[0] > 40_000 && asked[0] <= 43_200 - 300,
        "what is left of 12 h since the receive: {asked:?}"
    );
}

/// A claim check moved to the dead-letter queue: its stored envelope's lifetime starts
/// again (the bucket expires objects a fixed time after their last write), so that the
/// object outlives the copy; its bytes are unchanged.
#[tokio::test]
async fn a_dead_lettered_claim_check_restarts_its_objects_lifetime() {
    use twenty_webhook::aws::SqsDeadLetters;
    let bucket = new_bucket().await;
    let refusing = Destination::start(|_| Answer::status(400)).await;
    let sdk = sdk_config(moto_endpoint()).await;
    let sqs = sqs().await;
    let dlq = new_queue(&sqs, false).await;
    let w = worker(&format!(r#"[{{"events":["*"],"url":"{}"}}]"#, refusing.url))
        .await
        .with_dead_letters(SqsDeadLetters::with_sdk_config(&sdk, &dlq))
        .build();
    let m = big_note(&bucket);
    let claim = m.claim.clone().expect("a claim check");
    PayloadStore::with_sdk_config(&sdk)
        .put(&claim)
        .await
        .unwrap();
    let s3 = s3().await;
    let written = || async {
        let head = s3
            .head_object()
            .bucket(&bucket)
            .key(&claim.key)
            .send()
            .await
            .unwrap();
        head.last_modified().unwrap().as_secs_f64()
    };
    let before = written().await;
    // S3 keeps whole seconds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = w
        .handle(sqs_event(&[("big", &m.body, None)], false))
        .await
        .unwrap();
    assert!(failed(&response).is_empty(), "{response:?}");
    assert_eq!(drain(&sqs, &dlq, Duration::from_secs(1)).await.len(), 1);
    assert!(written().await > before, "written again when copied");
    let stored = PayloadStore::with_sdk_config(&sdk)
        .get(&bucket, &claim.key)
        .await
        .unwrap();
    assert_eq!(stored, claim.envelope.as_bytes(), "the same bytes");
}

/// Lean: a send cut off at the invocation's deadline (a handler that hangs past it) lets
/// its key go, so that the message's next delivery to this worker sends at once instead
/// of waiting for the cut-off send as for a twin.
#[tokio::test]
async fn lean_a_send_cut_off_at_the_deadline_does_not_hold_its_key() {
    use std::sync::atomic::AtomicUsize;
    use twenty_webhook::worker::{Router, Selection};
    let table = new_table().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let lean = Selection::events(&["person.*"]).mode(Mode::Lean);
    let router = Router::new()
        .on("hangs-once", lean, move |_| {
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        })
        .expect("a router");
    let sdk = sdk_config(moto_endpoint()).await;
    let ledger = DynamoLedger::with_sdk_config(&sdk, &table, Duration::from_secs(120));
    let w = Worker::builder(router, None, Arc::new(ledger), 10).build();
    let m = one("person.updated", "p1");
    let event = || sqs_event(&[("m1", &m.body, None)], false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let cut = w.handle_until(event(), Some(deadline)).await.unwrap();
    assert_eq!(failed(&cut), ["m1"], "cut off, so failed");
    let again = w.handle(event()).await.unwrap();
    assert!(failed(&again).is_empty(), "{again:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "run again at once");
}
