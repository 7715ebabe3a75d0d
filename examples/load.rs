//! Load under faults: a few thousand Twenty-signed requests, many at once, through the
//! function under `cargo lambda watch`, while SQS (moto, behind the fault proxy) is broken
//! and mended on a schedule. Prints, per phase and in total: acknowledged, queued, written
//! to the fallback log, and lost; then replays the fallback log and checks every
//! acknowledged event is in the queue. A script that prints its figures, not a test.
//!
//!     scripts/load [--requests N] [--concurrency N]
//!
//! (scripts/load installs the tools, then runs `cargo run --example load -- …`.)

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::fault_proxy::{Fault, FaultProxy};
use support::watch::{Watch, http_client};
use support::*;
use tokio::sync::Semaphore;

/// The schedule: each phase sends its share of the requests with this fault on.
const PHASES: &[(&str, Fault)] = &[
    ("healthy", Fault::None),
    ("refusing connections", Fault::Refuse),
    ("healthy again", Fault::None),
    ("503 Service Unavailable", Fault::Status(503)),
    ("throttling", Fault::Throttle),
    ("slow (700 ms)", Fault::Slow(Duration::from_millis(700))),
    ("500 Internal Error", Fault::Status(500)),
    ("dies: answers lost", Fault::DropAnswer),
    ("dies: requests dropped", Fault::DropRequest),
    ("healthy at the end", Fault::None),
];

/// How long a fault lasts past the last request of its phase, so sends retried after the
/// answer meet it too.
const FAULT_TAIL: Duration = Duration::from_millis(1500);

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let requests = arg("--requests", 3000);
    let concurrency = arg("--concurrency", 20);
    let budget_ms = arg("--budget-ms", 3000);

    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let proxy = FaultProxy::start(moto_endpoint()).await;
    let budget = budget_ms.to_string();
    let watch = Watch::local(
        &queue,
        &proxy.endpoint(),
        &[
            ("TWENTY_WEBHOOK_RETRY_BUDGET_MS", budget.as_str()),
            ("RUST_LOG", "warn"),
        ],
    )
    .await;
    let http = http_client();
    // The first request compiles the function; it is not counted.
    let warm = person_created("warm-up");
    post(&http, &watch.url, &warm).await;
    drain(&sqs, &queue, Duration::from_secs(5)).await;
    // A worker reads and deletes as events arrive, as a real one would (a full queue
    // would also slow moto down until it is the bottleneck).
    let workers = Workers::start(&sqs, &queue);

    println!(
        "{requests} requests, {concurrency} at a time, retry budget {budget_ms} ms, {} phases",
        PHASES.len()
    );
    let started = Instant::now();
    let per_phase = requests.div_ceil(PHASES.len());
    let gate = Arc::new(Semaphore::new(concurrency));
    let mut acknowledged: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut refused = 0;
    for (phase, (name, fault)) in PHASES.iter().enumerate() {
        proxy.set(*fault);
        let mut tasks = Vec::new();
        for i in 0..per_phase.min(requests - phase * per_phase) {
            let permit = gate.clone().acquire_owned().await.unwrap();
            let (http, url) = (http.clone(), watch.url.clone());
            let body = person_created(&format!("p{phase}-{i}"));
            tasks.push(tokio::spawn(async move {
                let answer = post(&http, &url, &body).await;
                drop(permit);
                answer
            }));
        }
        for task in tasks {
            match task.await.unwrap() {
                (200, Some(id)) => {
                    acknowledged.entry(name).or_default().insert(id);
                }
                _ => refused += 1,
            }
        }
        tokio::time::sleep(FAULT_TAIL).await;
    }
    proxy.set(Fault::None);
    let sending = started.elapsed();
    // Sends run after the answers: give the last ones their budget, then look.
    tokio::time::sleep(Duration::from_millis(budget_ms as u64 + 2000)).await;

    let mut queued = workers.finish().await;
    let log = std::fs::read_to_string(&watch.log).unwrap();
    let recovered = twenty_webhook::fallback::recover(&log);
    let fallback: BTreeSet<String> = recovered.messages.iter().map(|m| m.id.clone()).collect();

    println!(
        "\n{:<26} {:>12} {:>7} {:>9} {:>5}",
        "phase (fault)", "acknowledged", "queued", "fallback", "lost"
    );
    let mut totals = [0usize; 4];
    for (name, _) in PHASES {
        let ids = acknowledged.get(name).cloned().unwrap_or_default();
        let q = ids.iter().filter(|id| queued.contains(*id)).count();
        let f = ids.iter().filter(|id| fallback.contains(*id)).count();
        let lost = ids
            .iter()
            .filter(|id| !queued.contains(*id) && !fallback.contains(*id))
            .count();
        println!("{name:<26} {:>12} {q:>7} {f:>9} {lost:>5}", ids.len());
        for (t, v) in totals.iter_mut().zip([ids.len(), q, f, lost]) {
            *t += v;
        }
    }
    println!(
        "{:<26} {:>12} {:>7} {:>9} {:>5}",
        "total", totals[0], totals[1], totals[2], totals[3]
    );
    println!(
        "(an event both queued and in the fallback was taken by SQS after its answer was lost)"
    );
    println!(
        "refused or failed requests: {refused}; sending took {:.1} s",
        sending.as_secs_f64()
    );

    // The fallback goes back into the queue (workers draining it meanwhile); then every
    // acknowledged event must be there.
    let direct = twenty_webhook::aws::SqsTransport::with_sdk_config(
        &sdk_config(moto_endpoint()).await,
        &queue,
    );
    let workers = Workers::start(&sqs, &queue);
    let report = twenty_webhook::replay::replay(
        &direct,
        &log,
        tokio::time::Instant::now() + Duration::from_secs(600),
    )
    .await;
    queued.extend(workers.finish().await);
    let all: BTreeSet<&String> = acknowledged.values().flatten().collect();
    let missing = all.iter().filter(|id| !queued.contains(**id)).count();
    println!(
        "replay: {} sent, {} failed, {} repeated lines; acknowledged but not in the queue after replay: {missing}",
        report.sent.len(),
        report.failed.len(),
        report.duplicates
    );
    // Stop the function (and everything watch started) before exiting.
    drop(watch);
    if totals[3] > 0 || missing > 0 {
        eprintln!("LOST EVENTS");
        std::process::exit(1);
    }
}

/// Two workers reading and deleting from the queue, recording the ids they saw.
struct Workers {
    seen: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    fn start(sqs: &aws_sdk_sqs::Client, queue: &str) -> Self {
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..2)
            .map(|_| {
                let (sqs, queue) = (sqs.clone(), queue.to_owned());
                tokio::spawn(worker(sqs, queue, seen.clone(), stop.clone()))
            })
            .collect();
        Self { seen, stop, tasks }
    }

    /// Stops once the queue is empty; the ids seen.
    async fn finish(self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        self.seen.lock().unwrap().clone()
    }
}

/// Receives and deletes until `stop` is set and the queue is empty; records the ids.
async fn worker(
    sqs: aws_sdk_sqs::Client,
    queue: String,
    seen: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicBool>,
) {
    loop {
        let got = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        if got.is_empty() && stop.load(Ordering::Relaxed) {
            return;
        }
        let mut entries = Vec::new();
        for (i, m) in got.iter().enumerate() {
            seen.lock()
                .unwrap()
                .insert(envelope(m)["id"].as_str().unwrap().to_owned());
            entries.push(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap())
                    .build()
                    .unwrap(),
            );
        }
        if !entries.is_empty() {
            sqs.delete_message_batch()
                .queue_url(&queue)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("delete");
        }
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &str) -> (u16, Option<String>) {
    let mut request = http.post(url).body(body.to_owned());
    for (k, v) in twenty_headers(body) {
        request = request.header(k, v);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let json: serde_json::Value = response.json().await.unwrap_or_default();
            (status, json["id"].as_str().map(str::to_owned))
        }
        Err(_) => (0, None),
    }
}
