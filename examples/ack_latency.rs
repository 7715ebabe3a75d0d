//! Acknowledgement latency through `cargo lambda watch`: the time from sending a
//! Twenty-signed POST to receiving the 200, with SQS answering normally and with every SQS
//! call delayed by 1 s (the fault proxy in front of moto). In immediate mode the two must
//! match: the answer does not wait for SQS. Prints percentiles; a script, not a test.
//!
//!     scripts/ack-latency [--requests N]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::fault_proxy::{Fault, FaultProxy};
use support::watch::{Watch, http_client};
use support::*;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let requests: usize = args
        .iter()
        .position(|a| a == "--requests")
        .and_then(|i| args.get(i + 1))
        .map_or(300, |n| n.parse().expect("a number"));

    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let proxy = FaultProxy::start(moto_endpoint()).await;
    let watch = Watch::local(&queue, &proxy.endpoint(), &[("RUST_LOG", "warn")]).await;
    let http = http_client();
    // The first request compiles and starts the function: not counted.
    send(&http, &watch.url, "warm-up").await;

    println!("{requests} sequential requests per case, immediate mode, through cargo lambda watch");
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9}",
        "SQS", "p50", "p90", "p99", "max"
    );
    for (name, fault) in [
        ("answering normally", Fault::None),
        ("delayed by 1 s", Fault::Slow(Duration::from_secs(1))),
    ] {
        proxy.set(fault);
        let mut times = Vec::with_capacity(requests);
        for i in 0..requests {
            times.push(send(&http, &watch.url, &format!("{name}-{i}")).await);
        }
        times.sort();
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        println!(
            "{name:<28} {:>9} {:>9} {:>9} {:>9}",
            ms(times[requests / 2]),
            ms(times[requests * 9 / 10]),
            ms(times[requests * 99 / 100]),
            ms(times[requests - 1])
        );
    }
    proxy.set(Fault::None);
    // Let the delayed sends finish before the function is stopped.
    tokio::time::sleep(Duration::from_secs(3)).await;
}

/// One signed POST; the time until its 200 arrived.
async fn send(http: &reqwest::Client, url: &str, record: &str) -> Duration {
    let body = person_created(record);
    let mut request = http.post(url).body(body.clone());
    for (k, v) in twenty_headers(&body) {
        request = request.header(k, v);
    }
    let start = Instant::now();
    let response = request.send().await.expect("an answer");
    let status = response.status();
    let _ = response.bytes().await;
    let took = start.elapsed();
    assert_eq!(status, 200);
    took
}
