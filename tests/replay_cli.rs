//! `twenty-replay`, the real binary, against moto's SQS: lines as exported from CloudWatch
//! Logs go back into the queue with their ids, and replaying twice adds nothing to a FIFO
//! queue.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::*;
use twenty_webhook::envelope::{FifoIds, Message};
use twenty_webhook::fallback;

fn message(id: &str, record: &str) -> Message {
    Message {
        id: id.to_owned(),
        body: format!(
            r#"{{"version":1,"id":"{id}","eventName":"person.updated","record":{{"id":"{record}","note":"{}"}}}}"#,
            "ü".repeat(50_000)
        ),
        attributes: vec![
            ("eventName", "person.updated".to_owned()),
            ("objectName", "person".to_owned()),
            ("action", "updated".to_owned()),
        ],
        fifo: Some(FifoIds {
            group_id: format!("person:{record}"),
            deduplication_id: id.to_owned(),
        }),
        claim: None,
    }
}

fn replay_cli(queue_url: &str, input: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twenty-replay"))
        .env("QUEUE_URL", queue_url)
        .env("AWS_ENDPOINT_URL_SQS", moto_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run twenty-replay");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

#[tokio::test]
async fn replays_exported_lines_once_each() {
    let client = sqs().await;
    let url = new_queue(&client, true).await;
    let a = message("a1b2:0", "r-1");
    let b = message("c3d4", "r-2");
    let incomplete = message("e5f6", "r-3");
    let a_lines = fallback::lines(&a, "SQS said 503", 1).unwrap();
    let b_lines = fallback::lines(&b, "time budget spent", 2).unwrap();
    assert!(
        a_lines.len() > 1,
        "the large envelope is split over several lines"
    );
    // As a CloudWatch Logs export: prefixed lines, other log lines between, a part missing
    // for one event, and one line exported twice.
    let mut input = vec!["START RequestId: 8f0c Version: $LATEST".to_owned()];
    input.extend(
        a_lines
            .iter()
            .map(|l| format!("2025-02-10T15:30:45.123Z\t8f0c\t{l}")),
    );
    input.push(r#"{"level":"INFO","fields":{"message":"queued"}}"#.to_owned());
    input.extend(b_lines.iter().cloned());
    input.push(b_lines[0].clone());
    input.push(fallback::lines(&incomplete, "x", 3).unwrap()[0].clone());
    let input = input.join("\n");

    let (ok, report) = replay_cli(&url, &input);
    assert!(ok, "{report}");
    assert!(
        report.contains("sent a1b2:0\n") && report.contains("sent c3d4\n"),
        "{report}"
    );
    assert!(report.contains("skipped e5f6: parts missing"), "{report}");
    assert!(
        report.ends_with("sent 2, failed 0, skipped 2 (1 repeated lines, 1 incomplete events)\n"),
        "{report}"
    );

    // Again: SQS's FIFO deduplication drops the repeats, as the ids are the same.
    let (ok, _) = replay_cli(&url, &input);
    assert!(ok);
    let queued = drain(&client, &url, std::time::Duration::from_secs(1)).await;
    let mut bodies: Vec<&str> = queued.iter().map(|m| m.body().unwrap()).collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [a.body.as_str(), b.body.as_str()],
        "byte for byte, once each"
    );
    assert_eq!(attribute(&queued[0], "objectName"), Some("person"));
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_twenty-replay"))
        .env_remove("QUEUE_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("QUEUE_URL"));
}
