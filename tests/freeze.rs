//! The contract the whole design rests on: Lambda freezes the environment once the runtime
//! has answered and asked for the next event and every extension has asked for its next
//! event, and an acknowledged event must be in the queue (or, past the retry budget, in the
//! function's output) by then.
//!
//! The function's binary runs against a stub Runtime and Extensions API
//! (`support::lambda_api`); at the moment the invocation ends the test stops the process
//! (SIGSTOP) as Lambda would freeze it, and looks. SQS is moto behind the fault proxy.

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::fault_proxy::{Fault, FaultProxy};
use support::lambda_api::LambdaApi;
use support::*;
use tokio::io::AsyncReadExt;
use twenty_webhook::aws::SqsTransport;

const WITHIN: Duration = Duration::from_secs(60);

/// The function's process, its output captured as it is written.
struct Function {
    child: tokio::process::Child,
    pid: String,
    output: Arc<Mutex<String>>,
}

impl Function {
    fn start(api: &LambdaApi, queue_url: &str, sqs_endpoint: &str, budget_ms: u64) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_twenty-webhook"))
            .env_clear()
            .envs([
                ("AWS_LAMBDA_RUNTIME_API", api.addr.as_str()),
                ("AWS_LAMBDA_FUNCTION_NAME", "twenty-webhook"),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                ("AWS_LAMBDA_LOG_STREAM_NAME", "stream"),
                ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/twenty-webhook"),
                ("QUEUE_URL", queue_url),
                ("TWENTY_WEBHOOK_SECRET", SECRET),
                ("TWENTY_WEBHOOK_RETRY_BUDGET_MS", &budget_ms.to_string()),
                ("AWS_ENDPOINT_URL_SQS", sqs_endpoint),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("RUST_LOG", "info"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the function");
        let pid = child.id().expect("pid").to_string();
        let output = Arc::new(Mutex::new(String::new()));
        let mut stdout = child.stdout.take().expect("stdout");
        let sink = output.clone();
        tokio::spawn(async move {
            let mut buf = vec![0; 64 * 1024];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    return;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self { child, pid, output }
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {}", self.pid);
    }

    /// What Lambda does once the invocation has ended: nothing runs any more.
    fn freeze(&self) {
        self.signal("-STOP");
    }

    fn thaw(&self) {
        self.signal("-CONT");
    }

    /// The ids of the undelivered events in the output. The process is frozen or gone, so
    /// this is what it wrote before; the reader gets a moment to catch up with the pipe.
    async fn fallback_ids(&self, expected: usize) -> Vec<String> {
        for _ in 0..40 {
            let ids = self.recovered();
            if ids.len() >= expected {
                return ids;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.recovered()
    }

    /// The sum of `metric` over the EMF lines in the output (the process being frozen or
    /// gone, what it wrote before), once the reader has caught up with the pipe.
    async fn metric(&self, metric: &str) -> f64 {
        let sum = || {
            let output = self.output.lock().unwrap();
            output
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v.get("_aws").is_some())
                .filter_map(|v| v[metric].as_f64())
                .sum::<f64>()
        };
        for _ in 0..40 {
            if sum() > 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sum()
    }

    fn recovered(&self) -> Vec<String> {
        twenty_webhook::fallback::recover(&self.output.lock().unwrap())
            .messages
            .into_iter()
            .map(|m| m.id)
            .collect()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        // A stopped process must be able to die.
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.pid])
            .stderr(Stdio::null())
            .status();
    }
}

/// The id the function answered with, after checking the answer is a 200.
fn accepted_id(response: &serde_json::Value) -> String {
    assert_eq!(response["statusCode"], 200, "{response}");
    let body: serde_json::Value =
        serde_json::from_str(response["body"].as_str().expect("a body")).expect("JSON body");
    assert_eq!(body["status"], "accepted", "{body}");
    body["id"].as_str().expect("an id").to_owned()
}

async fn queued_ids(client: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    drain(client, url, Duration::from_millis(300))
        .await
        .iter()
        .map(|m| envelope(m)["id"].as_str().unwrap().to_owned())
        .collect()
}

struct Rig {
    client: aws_sdk_sqs::Client,
    url: String,
    proxy: Arc<FaultProxy>,
    api: Arc<LambdaApi>,
    function: Function,
}

async fn rig(fault: Fault, budget_ms: u64) -> Rig {
    let client = sqs().await;
    let url = new_queue(&client, false).await;
    let proxy = FaultProxy::start(moto_endpoint()).await;
    proxy.set(fault);
    let api = LambdaApi::start().await;
    let function = Function::start(&api, &url, &proxy.endpoint(), budget_ms);
    api.ready(WITHIN).await;
    Rig {
        client,
        url,
        proxy,
        api,
        function,
    }
}

#[tokio::test]
async fn a_slow_sqs_delays_the_freeze_not_the_answer() {
    let r = rig(Fault::Slow(Duration::from_millis(1_500)), 10_000).await;
    let ended = r
        .api
        .invoke(function_url_event(&person_created("slow-1")), WITHIN)
        .await;
    r.function.freeze();
    let id = accepted_id(&ended.response);
    let sqs_answered = r.proxy.answered_at.lock().unwrap().clone();
    assert!(!sqs_answered.is_empty(), "SQS answered before the freeze");
    assert!(
        ended.answered_at < sqs_answered[0],
        "the answer went out before SQS answered"
    );
    assert!(sqs_answered[0] <= ended.ended_at);
    assert_eq!(queued_ids(&r.client, &r.url).await, [id]);
    assert!(r.function.fallback_ids(0).await.is_empty());
    // The send's metrics line was written before the freeze, though the send ended after
    // the answer.
    assert_eq!(r.function.metric("Queued").await, 1.0);
    assert_eq!(r.function.metric("Received").await, 1.0);
}

#[tokio::test]
async fn a_short_refusal_is_retried_before_the_freeze() {
    let r = rig(Fault::Refuse, 10_000).await;
    let proxy = r.proxy.clone();
    let heal = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        proxy.set(Fault::None);
    });
    let ended = r
        .api
        .invoke(function_url_event(&person_created("refused-1")), WITHIN)
        .await;
    r.function.freeze();
    heal.await.unwrap();
    let id = accepted_id(&ended.response);
    assert_eq!(queued_ids(&r.client, &r.url).await, [id]);
    assert!(r.function.fallback_ids(0).await.is_empty());
}

#[tokio::test]
async fn an_outage_past_the_budget_is_in_the_output_before_the_freeze() {
    let r = rig(Fault::Status(500), 1_500).await;
    let ended = r
        .api
        .invoke(function_url_event(&person_created("outage-1")), WITHIN)
        .await;
    r.function.freeze();
    let id = accepted_id(&ended.response);
    assert_eq!(r.function.fallback_ids(1).await, std::slice::from_ref(&id));
    assert_eq!(
        r.proxy.forwarded.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(r.function.metric("Undelivered").await, 1.0);

    // And the line replays into the queue.
    let direct = SqsTransport::with_sdk_config(&sdk_config(moto_endpoint()).await, &r.url);
    let output = r.function.output.lock().unwrap().clone();
    let report = twenty_webhook::replay::replay(
        &direct,
        &output,
        tokio::time::Instant::now() + Duration::from_secs(10),
    )
    .await;
    assert_eq!(report.sent, std::slice::from_ref(&id));
    assert_eq!(queued_ids(&r.client, &r.url).await, [id]);
}

#[tokio::test]
async fn several_invocations_in_a_row_each_queued_before_its_freeze() {
    let r = rig(Fault::Slow(Duration::from_millis(400)), 10_000).await;
    let mut all = Vec::new();
    for i in 0..3 {
        if i > 0 {
            r.function.thaw();
        }
        let ended = r
            .api
            .invoke(
                function_url_event(&person_created(&format!("row-{i}"))),
                WITHIN,
            )
            .await;
        r.function.freeze();
        let id = accepted_id(&ended.response);
        assert_eq!(
            queued_ids(&r.client, &r.url).await,
            std::slice::from_ref(&id),
            "invocation {i}"
        );
        all.push(id);
    }
    all.dedup();
    assert_eq!(all.len(), 3);
    assert!(r.function.fallback_ids(0).await.is_empty());
}

#[tokio::test]
async fn an_extension_error_lets_the_send_in_flight_finish_before_the_process_ends() {
    let mut r = rig(Fault::Slow(Duration::from_millis(1_000)), 10_000).await;
    r.api.break_extensions_at(1);
    let n = r
        .api
        .hand_over(function_url_event(&person_created("broken-extension")));
    let (response, _) = r.api.answer(n, WITHIN).await;
    let id = accepted_id(&response);
    let status = tokio::time::timeout(WITHIN, r.function.child.wait())
        .await
        .expect("the process ends")
        .unwrap();
    assert!(!status.success(), "the extension's error is the process's");
    assert_eq!(queued_ids(&r.client, &r.url).await, [id]);
    assert!(r.function.fallback_ids(0).await.is_empty());
}

#[tokio::test]
async fn sigterm_during_a_send_writes_it_to_the_output_before_the_process_ends() {
    let mut r = rig(Fault::Slow(Duration::from_secs(20)), 10_000).await;
    let n = r
        .api
        .hand_over(function_url_event(&person_created("shutdown-1")));
    let (response, _) = r.api.answer(n, WITHIN).await;
    let id = accepted_id(&response);
    r.function.signal("-TERM");
    let status = tokio::time::timeout(WITHIN, r.function.child.wait())
        .await
        .expect("the process ends")
        .unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(r.function.fallback_ids(1).await, [id]);
    assert!(
        r.function
            .output
            .lock()
            .unwrap()
            .contains("the send was stopped")
    );
}
