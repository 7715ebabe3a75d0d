//! Lambda's SQS event source for real `twenty-worker` processes: each process runs against
//! a stub Runtime API of its own (`lambda_api`), and a poller receives up to ten messages
//! from moto's queue (with a visibility timeout, so SQS counts receives), hands them to the
//! function as Lambda shapes them, with a deadline, and deletes every message not reported
//! in `batchItemFailures`. A function that does not answer leaves its batch to come back.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::lambda_api::{LambdaApi, now_ms};

/// One invocation as the event source saw it.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub messages: usize,
    /// The message ids handed over, each with SQS's receive count.
    pub received: Vec<(String, u32)>,
    pub deadline: Instant,
    /// When the answer came; None if it did not come before the poller gave up.
    pub answered_at: Option<Instant>,
    pub failed: Vec<String>,
}

pub struct WorkerProcess {
    child: tokio::process::Child,
    stop: Arc<AtomicBool>,
    poller: tokio::task::JoinHandle<()>,
    pub invocations: Arc<Mutex<Vec<Invocation>>>,
    pub output: Arc<Mutex<String>>,
}

/// Everything a worker process needs besides its own settings: the queue, moto, a
/// function timeout.
#[derive(Clone)]
pub struct Source {
    pub queue_url: String,
    pub timeout: Duration,
}

impl WorkerProcess {
    /// Starts `binary` (`twenty-worker`) with `env` (on top of moto's endpoint, region and
    /// keys) and its event source on `source`.
    pub async fn start(binary: &str, source: &Source, env: &[(&str, String)]) -> Self {
        let api = LambdaApi::start().await;
        let endpoint = super::moto_endpoint();
        let mut child = tokio::process::Command::new(binary)
            .env_clear()
            .envs([
                ("AWS_LAMBDA_RUNTIME_API", api.addr.as_str()),
                ("AWS_LAMBDA_FUNCTION_NAME", "twenty-worker"),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                ("AWS_LAMBDA_LOG_STREAM_NAME", "stream"),
                ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/twenty-worker"),
                ("AWS_ENDPOINT_URL", endpoint),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("RUST_LOG", "info"),
                ("QUEUE_URL", source.queue_url.as_str()),
            ])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start twenty-worker");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout"))
                as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let sink = output.clone();
            tokio::spawn(async move {
                let mut stream = stream;
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let invocations = Arc::new(Mutex::new(Vec::new()));
        let poller = tokio::spawn(poll(source.clone(), api, stop.clone(), invocations.clone()));
        Self {
            child,
            stop,
            poller,
            invocations,
            output,
        }
    }

    /// The process's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Kills the process with SIGKILL, mid-batch or not, as Lambda ends an instance: the
    /// batch it had is neither answered nor deleted, and comes back after its visibility.
    pub async fn kill(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.stop.store(true, Ordering::SeqCst);
        self.poller.abort();
        self.output.lock().unwrap().clone()
    }

    /// Stops polling (the invocation under way finishes) and the process.
    pub async fn stop(mut self) -> String {
        self.stop.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(60), &mut self.poller).await;
        let _ = self.child.kill().await;
        self.output.lock().unwrap().clone()
    }
}

static FIFO_RECEIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn poll(
    source: Source,
    api: Arc<LambdaApi>,
    stop: Arc<AtomicBool>,
    invocations: Arc<Mutex<Vec<Invocation>>>,
) {
    let sqs = super::sqs().await;
    let name = source
        .queue_url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let arn = format!("arn:aws:sqs:us-east-1:123456789012:{name}");
    // Lambda's advice: the queue's visibility timeout at least the function's timeout.
    let visibility = (source.timeout.as_secs() * 2).max(2) as i32;
    let fifo = source.queue_url.ends_with(".fifo");
    while !stop.load(Ordering::SeqCst) {
        // SQS never hands a FIFO group to two receivers at once; moto's threaded server can,
        // when receives overlap. On FIFO queues the event sources take turns, short polls.
        let _turn = if fifo {
            Some(FIFO_RECEIVE.lock().await)
        } else {
            None
        };
        let received = sqs
            .receive_message()
            .queue_url(&source.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(if fifo { 0 } else { 1 })
            .visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        drop(_turn);
        if messages.is_empty() {
            if fifo {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            continue;
        }
        let payload = event(&messages, &arn).to_string();
        let deadline_ms = now_ms() + source.timeout.as_millis() as u64;
        let deadline = Instant::now() + source.timeout;
        let n = api.hand_over_until(payload, deadline_ms);
        // Lambda ends an invocation at its deadline; a little slack to see it late.
        let answer = api
            .try_answer(n, source.timeout + Duration::from_secs(2))
            .await;
        let mut invocation = Invocation {
            messages: messages.len(),
            received: messages
                .iter()
                .map(|m| {
                    let count = m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    (m.message_id().unwrap_or_default().to_owned(), count)
                })
                .collect(),
            deadline,
            answered_at: None,
            failed: Vec::new(),
        };
        if let Some((body, at)) = answer {
            invocation.answered_at = Some(at);
            let response: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            invocation.failed = response["batchItemFailures"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let done: Vec<_> = messages
                .iter()
                .filter(|m| {
                    !invocation
                        .failed
                        .iter()
                        .any(|f| Some(f.as_str()) == m.message_id())
                })
                .collect();
            for chunk in done.chunks(10) {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .build()
                            .unwrap()
                    })
                    .collect();
                let _ = sqs
                    .delete_message_batch()
                    .queue_url(&source.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await;
            }
        }
        invocations.lock().unwrap().push(invocation);
    }
}

/// The messages as Lambda's SQS event source hands them to the function.
fn event(messages: &[aws_sdk_sqs::types::Message], arn: &str) -> serde_json::Value {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, serde_json::Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.clone().into()))
                        .collect()
                })
                .unwrap_or_default();
            let message_attributes: serde_json::Map<String, serde_json::Value> = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                serde_json::json!({
                                    "stringValue": v.string_value(),
                                    "stringListValues": [],
                                    "binaryListValues": [],
                                    "dataType": v.data_type(),
                                }),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            serde_json::json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}
