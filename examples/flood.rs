//! The fan-out flood of issue 10, printed, not asserted: a correctly signed 0.9 MB batch of
//! 20,000 items with 0.4 MiB of `objectMetadata`, which each item would copy. Before the
//! limits it took 19.7 s and 7.7 GiB and was answered 200; now it is refused (413). Prints
//! the time to the verdict and the peak RSS of this process.
//!
//!     cargo run --release --example flood

use std::time::{Duration, Instant, SystemTime};

use twenty_webhook::ingest::config::{AckMode, Config, Refresh, Secret};
use twenty_webhook::ingest::{Inbound, accept};
use twenty_webhook::twenty::signature::sign;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    let metadata = "m".repeat(400 * 1024);
    let item = r#"{"record":{"id":"r"}}"#;
    let body = format!(
        r#"{{"eventName":"company.updated","objectMetadata":{{"id":"om","nameSingular":"company","pad":"{metadata}"}},"workspaceId":"ws","items":[{}]}}"#,
        vec![item; 20_000].join(",")
    );
    let config = Config {
        queue_url: "https://sqs.eu-west-1.amazonaws.com/1/q".into(),
        fifo: false,
        secret: None,
        secret_refresh: Refresh::default(),
        url_token: None,
        tolerance: Duration::from_secs(300),
        ack_mode: AckMode::Immediate,
        allow_unsigned: false,
        retry_budget: Duration::from_secs(20),
        payload_bucket: None,
    };
    let now = SystemTime::now();
    let ts = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let signature = sign(b"flood-secret", &ts, body.as_bytes());
    let headers = [
        ("content-type", b"application/json".as_slice()),
        ("x-twenty-webhook-timestamp", ts.as_bytes()),
        ("x-twenty-webhook-signature", signature.as_bytes()),
    ];
    let before = peak_rss_mib();
    let start = Instant::now();
    let verdict = Inbound::new("POST", headers, body.as_bytes())
        .and_then(|inbound| accept(&inbound, &config, &[Secret::new("flood-secret")], now));
    let took = start.elapsed();
    match verdict {
        Ok(accepted) => println!("accepted: {} messages", accepted.messages.len()),
        Err(e) => println!("refused: {} {} ({e})", e.status(), e.code()),
    }
    println!(
        "body {} bytes; verdict in {:.2} ms; peak RSS {:.1} MiB ({:.1} MiB before the request)",
        body.len(),
        took.as_secs_f64() * 1e3,
        peak_rss_mib(),
        before
    );
}
