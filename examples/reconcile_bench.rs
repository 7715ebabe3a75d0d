//! Reconciliation throughput against the local fake Twenty API (tests/support/fake_twenty.py):
//! a window of 10,000 changed records, read in pages at Twenty's older cap (200 a page)
//! and newer one (1,000), with pacing off, each row made an envelope (a dry run: moto's
//! SQS slows down as a queue fills, and would measure moto); then 1,000 of another object
//! queued to moto. The records per second and the API requests each window cost.
//!
//!     scripts/reconcile-bench      (installs nothing: run scripts/test once first)

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use twenty_webhook::aws::SqsTransport;
use twenty_webhook::envelope::Destination;
use twenty_webhook::reconcile::change::Context;
use twenty_webhook::reconcile::window::Window;
use twenty_webhook::reconcile::{ApiKey, Mode, NoTable, Reconciler, TwentyApi};
use twenty_webhook::secrets::Rotating;

const RECORDS: usize = 10_000;
const QUEUED: usize = 1_000;

fn start(script: &str) -> (Child, String) {
    let mut child = Command::new(".venv/bin/python")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run scripts/test once: it installs .venv");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_owned())
}

async fn post(http: &reqwest::Client, url: &str, body: serde_json::Value) {
    http.post(url).json(&body).send().await.unwrap();
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (_twenty, twenty_url) = start("tests/support/fake_twenty.py");
    let (_moto, moto_url) = start("tests/support/moto_server.py");
    let http = reqwest::Client::new();
    post(
        &http,
        &format!("{twenty_url}/_control/bulk"),
        serde_json::json!({"object": "people", "count": RECORDS}),
    )
    .await;
    post(
        &http,
        &format!("{twenty_url}/_control/bulk"),
        serde_json::json!({"object": "companies", "count": QUEUED}),
    )
    .await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&moto_url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "t", "t", None, None, "bench",
        ))
        .load()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let now = SystemTime::now();
    let window = Window {
        since: now - Duration::from_secs(3600),
        until: now + Duration::from_secs(60),
    };
    println!(
        "{:<34} {:>8} {:>9} {:>10} {:>12}",
        "run", "records", "requests", "seconds", "records/s"
    );
    for (cap, queue) in [(200, false), (1000, false), (1000, true)] {
        post(
            &http,
            &format!("{twenty_url}/_control/config"),
            serde_json::json!({"limit_cap": cap}),
        )
        .await;
        let url = sqs
            .create_queue()
            .queue_name(format!("bench-{cap}-{queue}"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let key = Rotating::fixed(ApiKey::parse("twenty-test-api-key").unwrap());
        let api = TwentyApi::new(&twenty_url, key, 6_000).unwrap();
        let objects: Vec<_> = api
            .objects(tokio::time::Instant::now() + Duration::from_secs(60))
            .await
            .unwrap()
            .into_iter()
            .filter(|(o, _)| o.plural == if queue { "companies" } else { "people" })
            .map(|(o, _)| o)
            .collect();
        let transport = SqsTransport::with_sdk_config(&sdk, &url);
        let reconciler = Reconciler {
            api: &api,
            transport: &transport,
            table: &NoTable,
            context: Context {
                received_at: "2026-11-27T00:00:00.000Z",
                workspace_id: None,
                destination: Destination::default(),
            },
            dry_run: !queue,
            deadline: tokio::time::Instant::now() + Duration::from_secs(900),
            page_limit: 1000,
        };
        let started = Instant::now();
        let reports = reconciler
            .run(&objects, Mode::Backfill(window), |_| {})
            .await;
        let took = started.elapsed().as_secs_f64();
        let read: u64 = reports.iter().map(|r| r.read).sum();
        println!(
            "{:<34} {:>8} {:>9} {:>10.2} {:>12.0}",
            format!(
                "{cap} a page, {}",
                if queue { "queued to moto" } else { "dry run" }
            ),
            read,
            api.requests(),
            took,
            read as f64 / took
        );
    }
    println!(
        "(requests: the object list, then the changed pass's pages and one deleted-pass page)"
    );
}
