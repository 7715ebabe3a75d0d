//! Nothing acknowledged is lost: SQS is broken on purpose (through a fault-injecting proxy
//! in front of moto) while Twenty-signed requests arrive, and every acknowledged event must
//! end up either queued or in the fallback log, from which it must replay into the queue.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use support::fault_proxy::{Fault, FaultProxy};
use support::*;
use twenty_webhook::aws::SqsTransport;
use twenty_webhook::ingest::config::AckMode;

#[derive(Debug)]
struct Counts {
    acknowledged: usize,
    queued: usize,
    fallback: usize,
    lost: usize,
    replayed: usize,
}

/// One fault scenario: `requests` deliveries arrive while `schedule` drives the proxy.
async fn run<F, Fut>(
    name: &str,
    ack_mode: AckMode,
    budget_ms: u64,
    requests: usize,
    schedule: F,
) -> Counts
where
    F: FnOnce(Arc<FaultProxy>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let client = sqs().await;
    let url = new_queue(&client, false).await;
    let proxy = FaultProxy::start(moto_endpoint()).await;
    let mut config = config(&url, ack_mode);
    config.retry_budget = Duration::from_millis(budget_ms);
    let h = Arc::new(Harness::with_config(client.clone(), config, &proxy.endpoint()).await);
    let faults = tokio::spawn(schedule(proxy.clone()));

    // Twenty sends in bursts of concurrent requests.
    let mut acknowledged = BTreeSet::new();
    let mut answers = Vec::new();
    for i in 0..requests {
        let h = h.clone();
        let body = person_created(&format!("{name}-{i}"));
        answers.push(tokio::spawn(async move {
            h.answer(signed_request(&body)).await
        }));
        if i % 5 == 4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for answer in answers {
        let (status, json) = answer.await.unwrap();
        match status {
            200 => {
                acknowledged.insert(json["id"].as_str().unwrap().to_owned());
            }
            503 => assert_eq!(ack_mode, AckMode::AfterEnqueue, "{json}"),
            other => panic!("{name}: unexpected {other} {json}"),
        }
    }
    h.settle().await;
    faults.await.unwrap();
    proxy.set(Fault::None);

    let queued: BTreeSet<String> = drain(&client, &url, Duration::from_secs(1))
        .await
        .iter()
        .map(|m| envelope(m)["id"].as_str().unwrap().to_owned())
        .collect();
    let log = h.fallback.lock().unwrap().clone();
    let recovered = twenty_webhook::fallback::recover(&log);
    let fallback: BTreeSet<String> = recovered.messages.iter().map(|m| m.id.clone()).collect();
    let lost = acknowledged
        .iter()
        .filter(|id| !queued.contains(*id) && !fallback.contains(*id))
        .count();

    // Every fallback line goes back into the queue (straight to moto, no faults).
    let direct = SqsTransport::with_sdk_config(&sdk_config(moto_endpoint()).await, &url);
    let report = twenty_webhook::replay::replay(
        &direct,
        &log,
        tokio::time::Instant::now() + Duration::from_secs(20),
    )
    .await;
    assert!(
        report.failed.is_empty(),
        "{name}: replay failed {:?}",
        report.failed
    );
    let after: BTreeSet<String> = queued
        .iter()
        .cloned()
        .chain(
            drain(&client, &url, Duration::from_millis(500))
                .await
                .iter()
                .map(|m| envelope(m)["id"].as_str().unwrap().to_owned()),
        )
        .collect();
    let missing: Vec<_> = acknowledged.difference(&after).collect();
    assert!(
        missing.is_empty(),
        "{name}: acknowledged but absent after replay: {missing:?}"
    );

    let counts = Counts {
        acknowledged: acknowledged.len(),
        queued: queued.len(),
        fallback: fallback.len(),
        lost,
        replayed: report.sent.len(),
    };
    println!("{name}: {counts:?}");
    assert_eq!(counts.lost, 0, "{name}: {counts:?}");
    counts
}

async fn after(ms: u64, proxy: Arc<FaultProxy>, fault: Fault) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    proxy.set(fault);
}

#[tokio::test]
async fn sqs_refusing_connections_for_a_while() {
    let c = run("refuse", AckMode::Immediate, 8_000, 20, |p| {
        p.set(Fault::Refuse);
        after(1_500, p, Fault::None)
    })
    .await;
    assert_eq!(
        (c.acknowledged, c.queued, c.fallback),
        (20, 20, 0),
        "retries carry it: {c:?}"
    );
}

#[tokio::test]
async fn sqs_answering_503_then_recovering() {
    let c = run("503", AckMode::Immediate, 8_000, 20, |p| {
        p.set(Fault::Status(503));
        after(1_000, p, Fault::None)
    })
    .await;
    assert_eq!((c.queued, c.fallback), (20, 0), "{c:?}");
}

#[tokio::test]
async fn sqs_throttling_then_recovering() {
    let c = run("throttle", AckMode::Immediate, 8_000, 20, |p| {
        p.set(Fault::Throttle);
        after(1_000, p, Fault::None)
    })
    .await;
    assert_eq!((c.queued, c.fallback), (20, 0), "{c:?}");
}

#[tokio::test]
async fn sqs_answering_500_past_the_budget_goes_to_the_fallback() {
    let c = run("500", AckMode::Immediate, 1_000, 10, |p| {
        p.set(Fault::Status(500));
        async {}
    })
    .await;
    assert_eq!(
        (c.acknowledged, c.queued, c.fallback, c.replayed),
        (10, 0, 10, 10),
        "{c:?}"
    );
}

#[tokio::test]
async fn sqs_answering_slowly() {
    // Under the per-attempt limit: slower, but nothing is lost or written to the fallback.
    let c = run("slow", AckMode::Immediate, 8_000, 10, |p| {
        p.set(Fault::Slow(Duration::from_millis(700)));
        async {}
    })
    .await;
    assert_eq!((c.queued, c.fallback), (10, 0), "{c:?}");
}

#[tokio::test]
async fn sqs_too_slow_for_the_budget() {
    // Each attempt times out, yet SQS may take the message late: the event can be both
    // queued and in the fallback, under one id. Never neither.
    let c = run("too-slow", AckMode::Immediate, 3_000, 5, |p| {
        p.set(Fault::Slow(Duration::from_secs(4)));
        async {}
    })
    .await;
    assert_eq!(c.fallback, 5, "{c:?}");
}

#[tokio::test]
async fn sqs_dying_mid_run() {
    // First requests go through; then SQS takes messages without answering; then it is gone.
    let c = run("dies", AckMode::Immediate, 2_000, 20, |p| async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        p.set(Fault::DropAnswer);
        tokio::time::sleep(Duration::from_millis(150)).await;
        p.set(Fault::DropRequest);
        tokio::time::sleep(Duration::from_millis(150)).await;
        p.set(Fault::Refuse);
    })
    .await;
    assert!(c.fallback > 0, "{c:?}");
}

#[tokio::test]
async fn after_enqueue_under_a_dead_sqs_answers_503_and_keeps_the_events() {
    let c = run(
        "after-enqueue-down",
        AckMode::AfterEnqueue,
        20_000,
        5,
        |p| {
            p.set(Fault::Refuse);
            async {}
        },
    )
    .await;
    // Twenty is told (503): nothing was acknowledged, yet every event is in the fallback.
    assert_eq!((c.acknowledged, c.fallback), (0, 5), "{c:?}");
}
