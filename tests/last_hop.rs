//! The last hop under trouble, with real `twenty-worker` processes (two where they share a
//! destination) fed by Lambda's SQS event source (`support::event_source`), moto's SQS
//! (visibility, receive counts, a dead-letter queue) and DynamoDB, and local destinations
//! that go down, refuse, rate-limit and hang. Time settings are scaled down; the scenarios
//! run one at a time, so that they do not slow each other down.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use support::destination::{Answer, Destination, Received};
use support::event_source::{Source, WorkerProcess};
use support::*;
use twenty_webhook::envelope::{Destination as Target, Message};

const WORKER: &str = env!("CARGO_BIN_EXE_twenty-worker");

/// The scenarios time what happens; two at once would time each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn envelope_of(event: &str, record_id: &str, n: usize, fifo: bool) -> Message {
    let body = format!(
        r#"{{"eventName":"{event}","workspaceId":"ws","record":{{"id":"{record_id}","updatedAt":"2026-11-29T10:00:{:02}.{:03}Z","n":{n}}}}}"#,
        n / 1000 % 60,
        n % 1000
    );
    let target = Target {
        fifo,
        payload_bucket: None,
    };
    ingest_messages(&body, target).remove(0)
}

/// `count` events of `event`, for records `<prefix>0`, `<prefix>1`..., on a standard queue.
fn numbered(event: &str, prefix: &str, count: usize) -> Vec<Message> {
    (0..count)
        .map(|n| envelope_of(event, &format!("{prefix}{n}"), n, false))
        .collect()
}

/// The event source of the queue at `url`, for a function timing out after `timeout_s`.
fn source(url: &str, timeout_s: u64) -> Source {
    Source {
        queue_url: url.to_owned(),
        timeout: Duration::from_secs(timeout_s),
    }
}

/// Two worker processes sharing the queue, as two Lambda instances would.
async fn two_workers(source: &Source, env: &[(&'static str, String)]) -> [WorkerProcess; 2] {
    [
        WorkerProcess::start(WORKER, source, env).await,
        WorkerProcess::start(WORKER, source, env).await,
    ]
}

/// Stops the workers; what they wrote.
async fn stop_all(workers: impl IntoIterator<Item = WorkerProcess>) -> String {
    let mut output = String::new();
    for w in workers {
        output.push_str(&w.stop().await);
    }
    output
}

/// Messages in a queue now, received and deleted.
async fn take_all(
    url: &str,
    wait_for: usize,
    within: Duration,
) -> Vec<aws_sdk_sqs::types::Message> {
    let sqs = sqs().await;
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < wait_for && Instant::now() < deadline {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        for m in &got {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        out.extend(got);
    }
    out
}

fn attribute<'a>(m: &'a aws_sdk_sqs::types::Message, name: &str) -> Option<&'a str> {
    m.message_attributes()?.get(name)?.string_value()
}

/// The settings every scenario shares, scaled down; `more` adds or replaces.
fn settings(
    rules: String,
    dlq: &str,
    table: Option<&str>,
    more: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("FORWARD_RULES", rules),
        ("DEAD_LETTER_QUEUE_URL", dlq.to_owned()),
        ("RETRY_HORIZON_SECS", "3600".to_owned()),
        ("BACKOFF_BASE_SECS", "1".to_owned()),
        ("BACKOFF_CAP_SECS", "4".to_owned()),
        ("BREAKER_OPEN_SECS", "2".to_owned()),
        ("DEADLINE_MARGIN_MS", "2000".to_owned()),
    ];
    if let Some(table) = table {
        env.push(("IDEMPOTENCY_TABLE", table.to_owned()));
    }
    for (k, v) in more {
        env.retain(|(name, _)| name != k);
        env.push((k, (*v).to_owned()));
    }
    env
}

/// Waits until `done` holds for what the destination received, or `within` passes.
async fn until(dest: &Destination, within: Duration, done: impl Fn(&[Received]) -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done(&dest.requests()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done(&dest.requests())
}

/// The ids a destination took (answered 2xx), with how often.
fn taken(requests: &[Received], ok: impl Fn(&Received) -> bool) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for r in requests.iter().filter(|r| ok(r)) {
        *ids.entry(r.headers["webhook-id"].clone()).or_insert(0) += 1;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_down_for_25_s_loses_nothing_and_is_not_hammered() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (url, dlq) = queues(false, 1000).await;
    let table = new_table().await;
    let start = Instant::now();
    let up_at = start + Duration::from_secs(25);
    let dest =
        Destination::start(move |_| Answer::status(if Instant::now() < up_at { 503 } else { 204 }))
            .await;
    let messages = numbered("person.updated", "p", 120);
    send_all(&url, &messages).await;
    let rules = format!(r#"[{{"name":"n8n","events":["*"],"url":"{}"}}]"#, dest.url);
    let source = source(&url, 10);
    let env = settings(rules, &dlq, Some(&table), &[]);
    let workers = two_workers(&source, &env).await;
    let after_up = |r: &Received| r.at >= up_at;
    let all = until(&dest, Duration::from_secs(90), |got| {
        taken(got, after_up).len() == 120
    })
    .await;
    let requests = dest.requests();
    let output = stop_all(workers).await;
    assert!(
        all,
        "{} of 120 delivered\n{output}",
        taken(&requests, after_up).len()
    );
    let while_down = requests.iter().filter(|r| r.at < up_at).count();
    assert!(while_down <= 60, "{while_down} calls while it was down");
    let delivered = taken(&requests, after_up);
    assert!(
        delivered.values().all(|n| *n == 1),
        "each taken once: {delivered:?}"
    );
    // Under the default (auto) mode an HTTP rule's webhook-id is the change's id.
    let want: std::collections::HashSet<String> =
        messages.iter().map(|m| lean_webhook_id(&m.body)).collect();
    assert!(delivered.keys().all(|id| want.contains(id)));
    let last = requests.iter().map(|r| r.at).max().unwrap();
    let caught_up = last.duration_since(up_at);
    assert!(
        caught_up <= Duration::from_secs(30),
        "caught up {caught_up:?} after it came back"
    );
    assert!(
        take_all(&dlq, 1, Duration::from_secs(1)).await.is_empty(),
        "none dead-lettered"
    );
    eprintln!("down 25 s: {while_down} calls while down, caught up {caught_up:?} after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_never_recovers_is_dead_lettered_after_the_horizon_with_why() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (url, dlq) = queues(false, 1000).await;
    let dest = Destination::start(|_| Answer::status(503)).await;
    let messages = numbered("person.created", "h", 3);
    let sent = std::time::SystemTime::now();
    send_all(&url, &messages).await;
    let rules = format!(
        r#"[{{"name":"never","events":["*"],"url":"{}"}}]"#,
        dest.url
    );
    let source = source(&url, 10);
    let env = settings(
        rules,
        &dlq,
        None,
        &[("RETRY_HORIZON_SECS", "8"), ("BACKOFF_CAP_SECS", "2")],
    );
    let worker = WorkerProcess::start(WORKER, &source, &env).await;
    let moved = take_all(&dlq, 3, Duration::from_secs(60)).await;
    let output = worker.stop().await;
    assert_eq!(moved.len(), 3, "{output}");
    for m in &moved {
        let original = messages
            .iter()
            .find(|o| Some(o.body.as_str()) == m.body())
            .unwrap();
        assert_eq!(
            attribute(m, "eventName"),
            Some("person.created"),
            "attributes kept"
        );
        let reason = attribute(m, "failureReason").unwrap();
        assert!(reason.starts_with("horizon_passed: never: "), "{reason}");
        assert!(
            !reason.contains("h0") && !reason.contains("updatedAt"),
            "no record in it"
        );
        assert_eq!(attribute(m, "failedDestination"), Some("never"));
        assert_eq!(attribute(m, "lastStatus"), Some("503"));
        let attempts: u32 = attribute(m, "attempts").unwrap().parse().unwrap();
        assert!(attempts >= 3, "{attempts} attempts");
        let moved_at: u64 = m.attributes().unwrap()[&MessageSystemAttributeName::SentTimestamp]
            .parse()
            .unwrap();
        let after = std::time::UNIX_EPOCH + Duration::from_millis(moved_at);
        let age = after.duration_since(sent).unwrap();
        assert!(
            age >= Duration::from_secs(8),
            "moved after {age:?}: before the horizon"
        );
        assert_eq!(Some(original.body.as_str()), m.body(), "byte for byte");
    }
    assert_eq!(queue_depth(&url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_an_unknown_version_and_a_400_are_dead_lettered_at_once_a_429_waits() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (url, dlq) = queues(false, 1000).await;
    let refuses = Destination::start(|_| Answer::status(400)).await;
    let first = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let seen = first.clone();
    let limited = Destination::start(move |_| {
        let mut first = seen.lock().unwrap();
        match *first {
            None => {
                *first = Some(Instant::now());
                Answer {
                    headers: vec![("retry-after".into(), "3".into())],
                    ..Answer::status(429)
                }
            }
            Some(_) => Answer::status(200),
        }
    })
    .await;
    let company = envelope_of("company.created", "c1", 1, false);
    let person = envelope_of("person.created", "p1", 2, false);
    let unknown = Message {
        body: company.body.replacen(r#""version":1"#, r#""version":9"#, 1),
        ..company.clone()
    };
    let poison = Message {
        body: "not an envelope".into(),
        ..company.clone()
    };
    let started = Instant::now();
    send_all(&url, &[company.clone(), person.clone(), unknown, poison]).await;
    let rules = format!(
        r#"[{{"name":"crm","events":["company.*"],"url":"{}"}},{{"name":"zap","events":["person.*"],"url":"{}"}}]"#,
        refuses.url, limited.url
    );
    let source = source(&url, 10);
    let worker = WorkerProcess::start(WORKER, &source, &settings(rules, &dlq, None, &[])).await;
    let moved = take_all(&dlq, 3, Duration::from_secs(20)).await;
    let within = started.elapsed();
    let done = until(&limited, Duration::from_secs(20), |got| got.len() >= 2).await;
    let output = worker.stop().await;
    assert_eq!(moved.len(), 3, "{output}");
    assert!(
        within < Duration::from_secs(10),
        "dead-lettered after {within:?}"
    );
    let mut codes: Vec<&str> = moved
        .iter()
        .map(|m| {
            attribute(m, "failureReason")
                .unwrap()
                .split(':')
                .next()
                .unwrap()
        })
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        ["destination_refused", "unknown_version", "unreadable"]
    );
    let refused = moved
        .iter()
        .find(|m| attribute(m, "failedDestination").is_some())
        .unwrap();
    assert_eq!(attribute(refused, "failedDestination"), Some("crm"));
    assert_eq!(attribute(refused, "lastStatus"), Some("400"));
    assert_eq!(refused.body(), Some(company.body.as_str()));
    assert_eq!(refuses.requests().len(), 1, "one call, no retry");
    assert!(done, "the 429 was retried: {output}");
    let calls = limited.requests();
    assert_eq!(calls.len(), 2);
    let waited = calls[1].at.duration_since(calls[0].at);
    assert!(
        waited >= Duration::from_secs(3),
        "Retry-After honoured: {waited:?}"
    );
    assert_eq!(queue_depth(&url).await, 0);
}

/// The most calls `dest` got within any `window`.
fn most_within(dest: &Destination, window: Duration) -> usize {
    let mut at: Vec<Instant> = dest.requests().iter().map(|r| r.at).collect();
    at.sort();
    (0..at.len())
        .map(|i| at[i..].iter().take_while(|t| **t < at[i] + window).count())
        .max()
        .unwrap_or(0)
}

/// `events` queued at once for one rule with `maxPerSecond` `per_second`, and a table:
/// the event source, the workers' settings and the destination.
async fn paced_backlog(
    events: usize,
    per_second: u32,
) -> (Source, Vec<(&'static str, String)>, Destination) {
    let (url, dlq) = queues(false, 1000).await;
    let table = new_table().await;
    let dest = Destination::ok().await;
    let messages = numbered("person.updated", "r", events);
    send_all(&url, &messages).await;
    let rules = format!(
        r#"[{{"name":"paced","events":["*"],"url":"{}","maxPerSecond":{per_second}}}]"#,
        dest.url
    );
    let env = settings(rules, &dlq, Some(&table), &[]);
    (source(&url, 10), env, dest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_per_second_is_shared_by_two_workers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (source, env, dest) = paced_backlog(120, 8).await;
    let started = Instant::now();
    let workers = two_workers(&source, &env).await;
    let all = until(&dest, Duration::from_secs(60), |got| {
        taken(got, |_| true).len() == 120
    })
    .await;
    let took = started.elapsed();
    let output = stop_all(workers).await;
    assert!(all, "{output}");
    let most = most_within(&dest, Duration::from_secs(5));
    assert!(most <= 48, "{most} calls within 5 s");
    assert!(took < Duration::from_secs(27), "120 events took {took:?}");
    eprintln!("maxPerSecond 8 over two workers: at most {most} calls in 5 s, 120 in {took:?}");
}

/// The receive counts of the messages the workers took, by message id (the highest seen).
fn receives(workers: &[WorkerProcess]) -> HashMap<String, u32> {
    let mut counts = HashMap::new();
    for w in workers {
        for invocation in w.invocations.lock().unwrap().iter() {
            for (id, n) in &invocation.received {
                let most = counts.entry(id.clone()).or_insert(0);
                *most = (*most).max(*n);
            }
        }
    }
    counts
}

/// A backlog held back by a rate limit drains with a few receives a message: each held
/// message keeps a slot and comes back for it, rather than all coming back at the next free
/// slot to be held back again. 200 events at 2 a second taken by six worker instances, as
/// Lambda's pollers scale out (real time: what is measured is how the holds line up with
/// SQS's whole-second visibility and the 5 s a send may wait for its slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_backlog_comes_back_when_it_can_go() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (source, env, dest) = paced_backlog(200, 2).await;
    let mut workers = Vec::new();
    for _ in 0..6 {
        workers.push(WorkerProcess::start(WORKER, &source, &env).await);
    }
    let all = until(&dest, Duration::from_secs(150), |got| {
        taken(got, |_| true).len() == 200
    })
    .await;
    let counts = receives(&workers);
    let output = stop_all(workers).await;
    assert!(all, "{output}");
    let mut per_message: Vec<u32> = counts.values().copied().collect();
    per_message.sort();
    let median = per_message[per_message.len() / 2];
    let most = per_message.last().copied().unwrap_or(0);
    eprintln!(
        "paced backlog: 200 events at 2/s over six workers: receives per message median {median}, max {most}, total {}; at most {} calls in 5 s",
        per_message.iter().sum::<u32>(),
        most_within(&dest, Duration::from_secs(5))
    );
    assert!(median <= 3, "median receives {median}: {per_message:?}");
    assert!(most <= 6, "most receives {most}: {per_message:?}");
    // Kept slots are slots of the one timeline: the rate holds (2 × 5 + 1 in any 5 s).
    let calls = most_within(&dest, Duration::from_secs(5));
    assert!(calls <= 11, "{calls} calls within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_hangs_past_the_deadline_gets_every_message_failed_in_time() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (url, dlq) = queues(false, 1000).await;
    let dest = Destination::start(|_| Answer {
        delay: Duration::from_secs(120),
        ..Answer::status(200)
    })
    .await;
    let messages = numbered("person.created", "s", 3);
    send_all(&url, &messages).await;
    let rules = format!(
        r#"[{{"name":"slow","events":["*"],"url":"{}","timeoutMs":60000}}]"#,
        dest.url
    );
    let source = source(&url, 6);
    let worker = WorkerProcess::start(WORKER, &source, &settings(rules, &dlq, None, &[])).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while worker.invocations.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let invocations = worker.invocations.lock().unwrap().clone();
    let output = worker.stop().await;
    let first = invocations
        .first()
        .unwrap_or_else(|| panic!("no invocation: {output}"));
    let answered = first
        .answered_at
        .unwrap_or_else(|| panic!("no answer: {output}"));
    assert!(answered < first.deadline, "answered after its deadline");
    assert_eq!(first.failed.len(), first.messages, "every message failed");
    assert!(!dest.requests().is_empty(), "the destination was called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_order_is_kept_through_the_breaker_and_the_limit() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (url, dlq) = queues(true, 1000).await;
    let table = new_table().await;
    let started = Instant::now();
    let up_at = started + Duration::from_secs(6);
    let dest =
        Destination::start(move |_| Answer::status(if Instant::now() < up_at { 502 } else { 200 }))
            .await;
    // Five records, four changes each, queued in order.
    let mut messages = Vec::new();
    for n in 0..4 {
        for record in 0..5 {
            messages.push(envelope_of(
                "person.updated",
                &format!("f{record}"),
                n,
                true,
            ));
        }
    }
    send_all(&url, &messages).await;
    let rules = format!(
        r#"[{{"name":"ordered","events":["*"],"url":"{}","maxPerSecond":5}}]"#,
        dest.url
    );
    let source = source(&url, 10);
    let env = settings(rules, &dlq, Some(&table), &[("BREAKER_FAILURES", "2")]);
    let workers = two_workers(&source, &env).await;
    let ok = |r: &Received| r.at >= up_at;
    let all = until(&dest, Duration::from_secs(60), |got| {
        taken(got, ok).len() == 20
    })
    .await;
    let output = stop_all(workers).await;
    assert!(all, "{output}");
    for record in 0..5 {
        let id = format!(r#""id":"f{record}""#);
        let order: Vec<u64> = dest
            .requests()
            .iter()
            .filter(|r| ok(r) && r.body.contains(&id))
            .map(|r| {
                let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                v["record"]["n"].as_u64().unwrap()
            })
            .collect();
        let log: Vec<String> = dest
            .requests()
            .iter()
            .filter(|r| r.body.contains(&id))
            .map(|r| {
                let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                format!("{}@{:?}", v["record"]["n"], r.at.duration_since(started))
            })
            .collect();
        assert_eq!(order, [0, 1, 2, 3], "record f{record}: {log:?}\n{output}");
    }
}

/// Runs `twenty-replay` with `args` against moto; its exit code and standard output.
fn replay(args: &[&str]) -> (i32, String) {
    replay_with(args, &[])
}

/// `replay` with more settings, given up after 60 s (exit -1).
fn replay_with(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_twenty-replay"))
        .args(args)
        .env_clear()
        .env("AWS_ENDPOINT_URL", moto_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run twenty-replay");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("twenty-replay's output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), format!("{text}{err}"))
}

/// The messages a queue holds, looked at and left there.
async fn peek(url: &str, want: usize) -> Vec<aws_sdk_sqs::types::Message> {
    let sqs = sqs().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if got.len() >= want || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_by_destination_and_by_reason_keeps_bodies_and_fifo_groups() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (url, dlq) = queues(true, 1000).await;
    let table = new_table().await;
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = fixed.clone();
    let crm = Destination::start(move |_| {
        Answer::status(if flag.load(std::sync::atomic::Ordering::SeqCst) {
            200
        } else {
            400
        })
    })
    .await;
    let company = envelope_of("company.created", "c1", 1, true);
    let mut poison = envelope_of("person.created", "p1", 2, true);
    poison.body = "not an envelope".into();
    send_all(&url, &[company.clone(), poison.clone()]).await;
    let rules = format!(
        r#"[{{"name":"crm","events":["company.*"],"url":"{}"}}]"#,
        crm.url
    );
    let source = source(&url, 10);
    let worker =
        WorkerProcess::start(WORKER, &source, &settings(rules, &dlq, Some(&table), &[])).await;
    let moved = peek(&dlq, 2).await;
    assert_eq!(moved.len(), 2, "both dead-lettered");
    let copy = moved
        .iter()
        .find(|m| m.body() == Some(company.body.as_str()))
        .unwrap();
    let system = copy.attributes().unwrap();
    let fifo = company.fifo.as_ref().unwrap();
    assert_eq!(
        system[&MessageSystemAttributeName::MessageGroupId],
        fifo.group_id
    );
    // An id of its own: a second copy of the message (another destination failing later)
    // must not be dropped as a repeat of this one.
    assert_ne!(
        system[&MessageSystemAttributeName::MessageDeduplicationId],
        fifo.deduplication_id
    );

    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    let (code, out) = replay(&[
        "redrive",
        "--from",
        &dlq,
        "--to",
        &url,
        "--destination",
        "crm",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "moved 1, left 1 (not matching) and 0 (dead-lettered since the start), failed 0"
        ),
        "{out}"
    );
    let delivered = until(&crm, Duration::from_secs(30), |got| got.len() >= 2).await;
    let (code, dry) = replay(&[
        "redrive",
        "--from",
        &dlq,
        "--to",
        &url,
        "--reason",
        "unreadable",
        "--dry-run",
    ]);
    let (code2, real) = replay(&[
        "redrive",
        "--from",
        &dlq,
        "--to",
        &url,
        "--reason",
        "unreadable",
    ]);
    let back = peek(&dlq, 1).await;
    let output = worker.stop().await;
    assert!(
        delivered,
        "the redriven event reached the fixed destination: {output}"
    );
    let calls = crm.requests();
    assert_eq!(calls.len(), 2, "refused once, then taken once");
    assert_eq!(calls[1].body, company.body, "the same bytes");
    assert_eq!(
        calls[1].headers["webhook-id"],
        lean_webhook_id(&company.body),
        "the same id"
    );
    assert_eq!(code, 0, "{dry}");
    assert!(dry.contains("would move 1, left 0"), "{dry}");
    assert_eq!(code2, 0, "{real}");
    assert!(real.contains("moved 1, left 0"), "{real}\n{output}");
    // The poison comes back to the dead-letter queue, saying why, not marked redriven.
    assert_eq!(back.len(), 1, "{output}");
    assert_eq!(back[0].body(), Some("not an envelope"));
    assert!(
        attribute(&back[0], "failureReason")
            .unwrap()
            .starts_with("unreadable: ")
    );
    assert_eq!(attribute(&back[0], "redriven"), None);
}

/// On a FIFO dead-letter queue a message that the filter leaves holds back the rest of
/// its group: the run says how many it could not look at, and fails, rather than report
/// a clean run that moved nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_redrive_says_what_it_could_not_look_at() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (url, dlq) = queues(true, 1000).await;
    let sqs = sqs().await;
    // Eleven for crm, then one for n8n: one receive hands out ten of a group at most, and
    // none of it while those ten are held.
    let mut destinations = vec!["crm"; 11];
    destinations.push("n8n");
    for (n, destination) in destinations.iter().enumerate() {
        let reason = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(format!("destination_refused: {destination}: answered 400"))
            .build()
            .unwrap();
        let failed = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(*destination)
            .build()
            .unwrap();
        sqs.send_message()
            .queue_url(&dlq)
            .message_body(format!("{{\"n\":{n}}}"))
            .message_attributes("failureReason", reason)
            .message_attributes("failedDestination", failed)
            .message_group_id("person:p1")
            .message_deduplication_id(format!("copy-{n}"))
            .send()
            .await
            .unwrap();
    }
    let (code, out) = replay(&[
        "redrive",
        "--from",
        &dlq,
        "--to",
        &url,
        "--destination",
        "n8n",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("moved 0, left 10"), "{out}");
    assert!(out.contains("not looked at 2"), "{out}");
    // Nothing was lost: all are still there, in order.
    let left = take_all(&dlq, 12, Duration::from_secs(10)).await;
    let bodies: Vec<String> = left
        .iter()
        .filter_map(|m| m.body())
        .map(str::to_owned)
        .collect();
    let want: Vec<String> = (0..12).map(|n| format!("{{\"n\":{n}}}")).collect();
    assert_eq!(bodies, want);
}

/// A destination that hangs for the whole horizon: each message is held until the
/// breaker's opening or the probe's lease ends, once per hold, not every few seconds
/// while a probe hangs; then moved with its reason. 30 events, two workers, the
/// horizon 40 s, the breaker open 2 s doubling to 4 s, calls cut at 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_destination_holds_messages_once_per_opening() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (url, dlq) = queues(false, 1000).await;
    let table = new_table().await;
    let dest = Destination::start(|_| Answer {
        delay: Duration::from_secs(30),
        ..Answer::status(200)
    })
    .await;
    let messages = numbered("person.created", "k", 30);
    send_all(&url, &messages).await;
    let rules = format!(
        r#"[{{"name":"hangs","events":["*"],"url":"{}","timeoutMs":2000}}]"#,
        dest.url
    );
    let source = source(&url, 10);
    let env = settings(
        rules,
        &dlq,
        Some(&table),
        &[("RETRY_HORIZON_SECS", "40"), ("BREAKER_FAILURES", "3")],
    );
    let workers = two_workers(&source, &env).await;
    let moved = take_all(&dlq, 30, Duration::from_secs(120)).await;
    let counts = receives(&workers);
    let output = stop_all(workers).await;
    assert_eq!(moved.len(), 30, "{output}");
    let mut per_message: Vec<u32> = counts.values().copied().collect();
    per_message.sort();
    let median = per_message[per_message.len() / 2];
    let most = per_message.last().copied().unwrap_or(0);
    let calls = dest.requests().len();
    eprintln!(
        "hanging destination, 40 s horizon: receives per message median {median}, max {most}; {calls} calls"
    );
    // About ten openings of 2 to 4 s, a probe's lease each, in 40 s: a receive each. (Held
    // in 1 s loops while a probe hung, a message was received 16 times.)
    assert!(median <= 11, "median receives {median}: {per_message:?}");
}

/// A claim check redriven has its stored envelope written again (its lifetime starts
/// again, as the copy's does); one whose envelope is gone stays in the dead-letter queue,
/// named, rather than go back to fail for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redriven_claim_check_renews_its_object_or_stays() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (url, dlq) = queues(false, 1000).await;
    let bucket = new_bucket().await;
    let big = |id: &str| {
        let body = format!(
            r#"{{"eventName":"note.created","workspaceId":"ws","record":{{"id":"{id}","body":"{}"}}}}"#,
            "x".repeat(1_100_000)
        );
        let target = Target {
            fifo: false,
            payload_bucket: Some(&bucket),
        };
        ingest_messages(&body, target).remove(0)
    };
    let (kept, gone) = (big("n1"), big("n2"));
    let sdk = sdk_config(moto_endpoint()).await;
    let store = twenty_webhook::aws::PayloadStore::with_sdk_config(&sdk);
    store.put(kept.claim.as_ref().unwrap()).await.unwrap();
    send_all(&dlq, &[kept.clone(), gone.clone()]).await;
    let s3 = s3().await;
    let key = &kept.claim.as_ref().unwrap().key;
    let written = || async {
        s3.head_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap()
            .last_modified()
            .unwrap()
            .as_secs_f64()
    };
    let before = written().await;
    // S3 keeps whole seconds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, out) = replay(&["redrive", "--from", &dlq, "--to", &url]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("moved 1, left 0"), "{out}");
    assert!(
        out.contains("failed ") && out.contains("its stored envelope"),
        "{out}"
    );
    assert!(
        written().await > before,
        "written again before it was sent back"
    );
    let back = take_all(&url, 1, Duration::from_secs(5)).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body(), Some(kept.body.as_str()));
    let stays = take_all(&dlq, 1, Duration::from_secs(5)).await;
    assert_eq!(stays.len(), 1);
    assert_eq!(stays[0].body(), Some(gone.body.as_str()));
}

/// A redrive that runs longer than its hold receives again what it held: it looks at each
/// message once all the same, counts it once, and ends. 60 messages left by the filter,
/// held a second each (`REDRIVE_HOLD_SECS`, scaled down from 120).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_longer_than_its_hold_looks_at_each_message_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (url, dlq) = queues(false, 1000).await;
    let messages = numbered("person.created", "l", 60);
    send_all(&dlq, &messages).await;
    let (code, out) = replay_with(
        &[
            "redrive",
            "--from",
            &dlq,
            "--to",
            &url,
            "--destination",
            "nobody",
        ],
        &[("REDRIVE_HOLD_SECS", "1")],
    );
    assert_eq!(code, 0, "ended, all looked at: {out}");
    assert!(
        out.contains("moved 0, left 60 "),
        "each counted once: {out}"
    );
    assert_eq!(take_all(&dlq, 60, Duration::from_secs(10)).await.len(), 60);
}
