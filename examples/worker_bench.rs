//! The worker's cost, printed, not asserted (see docs/performance.md):
//!
//! 1. per message: `Worker::handle` on a one-message batch forwarding to a local
//!    destination, against a bare HTTP POST of the same body to the same destination with
//!    the same client library (release build, no idempotency table);
//! 2. a batch of ten messages to a destination that answers after 50 ms: how many
//!    destination round trips the batch takes (1 when all ten go at once);
//! 3. CPU per forward with a rule `transform` against without (the process's user and
//!    system time over blocks of one-message batches, alternating; the destination runs in
//!    the same process, alike for both), and `Transform::apply` alone;
//! 4. the worker's own CPU per message (the thread it runs on, the destination on another
//!    thread, keeping connections alive as n8n's or Zapier's do): one-message batches to a
//!    destination that answers at once, and batches of ten to one that answers in 50 ms.
//!
//!     scripts/worker-bench [MESSAGES] [cpu]   (default 2000; `cpu`: part 4 alone)

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use support::destination::{Answer, Destination};
use twenty_webhook::envelope::Message;
use twenty_webhook::worker::Forwarder;
use twenty_webhook::worker::NoLedger;
use twenty_webhook::worker::Worker;
use twenty_webhook::worker::rules::parse_rules;

const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn message(i: usize) -> Message {
    let body = support::person_created(&format!("bench-{i}"));
    support::ingest_messages(&body, Default::default()).remove(0)
}

fn sqs_event(messages: &[Message]) -> SqsEvent {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            serde_json::json!({
                "messageId": format!("m{i}"), "receiptHandle": format!("r{i}"), "body": m.body,
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:events",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

/// A flat body of four fields, as a Zapier or n8n rule would send.
const TRANSFORM: &str = r#"{"inputPathsMap": {"id": "$.record.id", "name": "$.record.name.firstName",
    "event": "$.eventName", "at": "$.receivedAt"},
    "inputTemplate": "{\"id\": <id>, \"name\": <name>, \"event\": \"<event>\", \"at\": <at>}"}"#;

fn worker(url: &str) -> Worker {
    worker_with(url, None)
}

fn worker_with(url: &str, transform: Option<&str>) -> Worker {
    let transform = transform.map_or(String::new(), |t| format!(r#","transform":{t}"#));
    let rules = parse_rules(&format!(
        r#"[{{"name":"bench","events":["*"],"url":"{url}","secret":"{KEY}"{transform}}}]"#
    ))
    .unwrap();
    Worker::builder(
        Forwarder::default().router(rules).unwrap(),
        None,
        Arc::new(NoLedger),
        10,
    )
    .build()
}

/// The process's user and system CPU time so far (`/proc/self/stat`, in clock ticks of
/// 10 ms: meaningful over many messages, not one).
fn cpu() -> Duration {
    cpu_of("/proc/self/stat")
}

/// This thread's, the same way (`/proc/thread-self/stat`).
fn thread_cpu() -> Duration {
    cpu_of("/proc/thread-self/stat")
}

fn cpu_of(stat: &str) -> Duration {
    let stat = std::fs::read_to_string(stat).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = after
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

/// A destination on its own thread that keeps connections alive and answers 204 after
/// `delay`: its CPU is not the worker's.
fn keep_alive_destination(delay: Duration) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let thread = std::thread::Builder::new().name("destination".into());
    let _ = thread.spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    loop {
                        let mut length = 0;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let header = line.trim_end().to_ascii_lowercase();
                            if header.is_empty() {
                                break;
                            }
                            if let Some(v) = header.strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        if read.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(delay).await;
                        let answer = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
                        if write.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    });
    url
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let messages: Vec<Message> = (0..n).map(message).collect();
    // `cpu`: the worker's own CPU alone (4.), for profiling.
    let cpu_only = std::env::args().nth(2).as_deref() == Some("cpu");

    let http = support::watch::http_client();
    if cpu_only {
        worker_cpu(&messages, &http).await;
        return;
    }
    // 1. Per message, worker against a bare POST, interleaved.
    let dest = Destination::ok().await;
    let w = worker(&dest.url);
    let (mut ours, mut bare) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for m in messages.iter().take(50) {
        // Warm-up: the HTTP client, the allocator.
        let _ = w.handle(sqs_event(std::slice::from_ref(m))).await;
    }
    for m in &messages {
        let event = sqs_event(std::slice::from_ref(m));
        let start = Instant::now();
        let response = w.handle(event).await.unwrap();
        ours.push(start.elapsed());
        assert!(response.batch_item_failures.is_empty());

        let start = Instant::now();
        let answer = http
            .post(&dest.url)
            .header("content-type", "application/json")
            .body(m.body.clone())
            .send()
            .await
            .unwrap();
        bare.push(start.elapsed());
        assert!(answer.status().is_success());
    }
    let (o, b) = (median(ours.clone()), median(bare.clone()));
    let us = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
    println!(
        "per message ({n} each, interleaved, median): worker {} , bare POST {} , worker/bare {:.2}x",
        us(o),
        us(b),
        o.as_secs_f64() / b.as_secs_f64()
    );
    let total = |v: &[Duration]| v.iter().sum::<Duration>();
    println!(
        "per message (mean): worker {} , bare POST {}",
        us(total(&ours) / n as u32),
        us(total(&bare) / n as u32)
    );

    // 2. A batch of ten to a destination that takes 50 ms.
    let slow = Destination::start(|_| Answer {
        delay: Duration::from_millis(50),
        ..Answer::status(200)
    })
    .await;
    let w = worker(&slow.url);
    let mut times = Vec::new();
    for round in 0..20 {
        let batch = &messages[round * 10..round * 10 + 10];
        let start = Instant::now();
        let response = w.handle(sqs_event(batch)).await.unwrap();
        times.push(start.elapsed());
        assert!(response.batch_item_failures.is_empty());
    }
    let t = median(times);
    println!(
        "a batch of 10 to a destination answering in 50 ms (20 batches, median): {:.1} ms, {:.2} round trips",
        t.as_secs_f64() * 1e3,
        t.as_secs_f64() / 0.050
    );

    // 3. CPU per forward, with a transform and without, in alternating blocks.
    let plain = worker_with(&dest.url, None);
    let shaped = worker_with(&dest.url, Some(TRANSFORM));
    let (mut cpu_plain, mut cpu_shaped) = (Duration::ZERO, Duration::ZERO);
    for block in messages.chunks(250) {
        for (w, total) in [(&plain, &mut cpu_plain), (&shaped, &mut cpu_shaped)] {
            let before = cpu();
            for m in block {
                let response = w.handle(sqs_event(std::slice::from_ref(m))).await.unwrap();
                assert!(response.batch_item_failures.is_empty());
            }
            *total += cpu() - before;
        }
    }
    println!(
        "CPU per forward ({n} each, alternating blocks of 250): without transform {} , with {} ",
        us(cpu_plain / n as u32),
        us(cpu_shaped / n as u32)
    );
    worker_cpu(&messages, &http).await;

    let transform = twenty_webhook::worker::transform::Transform::parse(
        &serde_json::from_str(TRANSFORM).unwrap(),
    )
    .unwrap();
    let envelope: serde_json::Value = serde_json::from_str(&messages[0].body).unwrap();
    let start = Instant::now();
    for _ in 0..100_000 {
        std::hint::black_box(transform.apply(std::hint::black_box(&envelope), "bench"));
    }
    println!(
        "Transform::apply alone (4 paths, 100,000 times): {}",
        us(start.elapsed() / 100_000)
    );
}

/// 4. The worker's own CPU per message: the destination on another thread.
async fn worker_cpu(messages: &[Message], http: &reqwest::Client) {
    let n = messages.len();
    let us = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
    let instant = worker(&keep_alive_destination(Duration::ZERO));
    for m in messages.iter().take(50) {
        let _ = instant.handle(sqs_event(std::slice::from_ref(m))).await;
    }
    // The events are made first: what is timed is the worker's work on each.
    let events: Vec<SqsEvent> = messages
        .iter()
        .map(|m| sqs_event(std::slice::from_ref(m)))
        .collect();
    let before = thread_cpu();
    for event in events {
        let response = instant.handle(event).await.unwrap();
        assert!(response.batch_item_failures.is_empty());
    }
    let instant_cpu = (thread_cpu() - before) / n as u32;
    // The same destination, the same client library, a bare POST of each body.
    let bare_url = keep_alive_destination(Duration::ZERO);
    let bodies: Vec<String> = messages.iter().map(|m| m.body.clone()).collect();
    let before = thread_cpu();
    for body in bodies {
        let answer = http
            .post(&bare_url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
    }
    let bare_cpu = (thread_cpu() - before) / n as u32;
    let slow = worker(&keep_alive_destination(Duration::from_millis(50)));
    let batches = (n / 10).max(1);
    let _ = slow.handle(sqs_event(&messages[..10])).await;
    let events: Vec<SqsEvent> = (0..batches)
        .map(|b| sqs_event(&messages[(b * 10) % (n - 9)..][..10]))
        .collect();
    let before = thread_cpu();
    for event in events {
        let response = slow.handle(event).await.unwrap();
        assert!(response.batch_item_failures.is_empty());
    }
    let slow_cpu = (thread_cpu() - before) / (batches * 10) as u32;
    println!(
        "worker CPU per message (its thread; destination elsewhere, kept alive): {} to an \
         instant destination ({n} one-message batches; a bare POST {}), {} to a 50 ms one \
         ({batches} batches of 10)",
        us(instant_cpu),
        us(bare_cpu),
        us(slow_cpu)
    );
}
