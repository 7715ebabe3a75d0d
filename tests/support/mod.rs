//! Shared by the integration tests: a real moto server over HTTP, SQS helpers, signing.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{Credentials, Region};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use lambda_http::{Body, Request, Response};
use twenty_webhook::aws::{PayloadStore, SqsTransport};
use twenty_webhook::ingest::config::{AckMode, Config, Refresh, Secret, SecretSource};
use twenty_webhook::ingest::dispatch::Dispatcher;
use twenty_webhook::ingest::function_url::{App, secrets_of};
use twenty_webhook::ingest::inflight::InFlight;
use twenty_webhook::secrets::Rotating;
use twenty_webhook::twenty::signature;

pub mod counting_proxy;
pub mod destination;
pub mod event_source;
pub mod fault_proxy;
pub mod ingest_process;
pub mod lambda_api;
pub mod twenty;
pub mod watch;

pub const SECRET: &str = "twenty-webhook-test-secret";

pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python that has moto: `TWENTY_TEST_PYTHON`, or the project's `.venv`.
pub fn python() -> PathBuf {
    let path = std::env::var_os("TWENTY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_dir().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "no Python with moto at {}: run `scripts/test`, which installs it into .venv",
        path.display()
    );
    path
}

/// Verifies a Standard Webhooks request with the Python `standardwebhooks` package (an
/// implementation that is not ours); Err holds its reason.
pub fn standard_webhooks_verify(
    secret: &str,
    body: &str,
    headers: &std::collections::HashMap<String, String>,
) -> Result<(), String> {
    standard_webhooks_verify_all(secret, [(body, headers)])
}

/// `standard_webhooks_verify` for many requests, in one run of the package.
pub fn standard_webhooks_verify_all<'a>(
    secret: &str,
    requests: impl IntoIterator<Item = (&'a str, &'a std::collections::HashMap<String, String>)>,
) -> Result<(), String> {
    use std::io::Write;
    let all: Vec<serde_json::Value> = requests
        .into_iter()
        .map(|(body, headers)| serde_json::json!({ "secret": secret, "body": body, "headers": headers }))
        .collect();
    let mut child = Command::new(python())
        .arg(project_dir().join("tests/support/verify_standard_webhook.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the standardwebhooks check");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::Value::Array(all).to_string().as_bytes())
        .expect("write the requests");
    let out = child.wait_with_output().expect("standardwebhooks check");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

struct Moto {
    endpoint: String,
    // Held for the life of the process: when it ends, moto's stdin closes and it stops.
    _child: Child,
}

/// One moto server per test process, started on first use on a free loopback port.
pub fn moto_endpoint() -> &'static str {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    &MOTO
        .get_or_init(|| {
            let mut child = Command::new(python())
                .arg(project_dir().join("tests/support/moto_server.py"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start moto's server");
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("moto stdout"))
                .read_line(&mut line)
                .expect("read moto's endpoint");
            let endpoint = line.trim().to_owned();
            assert!(
                endpoint.starts_with("http://127.0.0.1:"),
                "moto did not start (is it installed in .venv? run scripts/test): {line:?}"
            );
            Moto {
                endpoint,
                _child: child,
            }
        })
        .endpoint
}

pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await
}

pub async fn sqs() -> Client {
    Client::new(&sdk_config(moto_endpoint()).await)
}

/// An S3 client for moto (addressed by path, as local S3 servers are).
pub async fn s3() -> aws_sdk_s3::Client {
    let sdk = sdk_config(moto_endpoint()).await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    )
}

/// A fresh, empty S3 bucket in moto.
pub async fn new_bucket() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "payloads-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    s3().await
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create bucket");
    name
}

/// A fresh queue for each test: moto slows down as a queue fills, and tests run in parallel.
pub async fn new_queue(client: &Client, fifo: bool) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mut name = format!("t{}-{n}-{nanos}", std::process::id());
    let mut request = client
        .create_queue()
        .attributes(QueueAttributeName::MaximumMessageSize, "1048576");
    if fifo {
        name.push_str(".fifo");
        request = request.attributes(QueueAttributeName::FifoQueue, "true");
    }
    request
        .queue_name(name)
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url")
}

/// Everything in the queue now (waits up to `wait` for the first message).
/// A queue and its dead-letter queue (redrive after `backstop` receives).
pub async fn queues(fifo: bool, backstop: u32) -> (String, String) {
    let sqs = sqs().await;
    let dlq = new_queue(&sqs, fifo).await;
    let url = new_queue(&sqs, fifo).await;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"{backstop}"}}"#),
        )
        .send()
        .await
        .unwrap();
    (url, dlq)
}

/// Puts `messages` on the queue at `url` as the ingest function would, ten at a time.
pub async fn send_all(url: &str, messages: &[twenty_webhook::envelope::Message]) {
    let sqs = sqs().await;
    for chunk in messages.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let attributes = m
                    .attributes
                    .iter()
                    .map(|(k, v)| {
                        let value = aws_sdk_sqs::types::MessageAttributeValue::builder()
                            .data_type("String")
                            .string_value(v)
                            .build()
                            .unwrap();
                        ((*k).to_owned(), value)
                    })
                    .collect();
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body)
                    .set_message_attributes(Some(attributes))
                    .set_message_group_id(m.fifo.as_ref().map(|f| f.group_id.clone()))
                    .set_message_deduplication_id(
                        m.fifo.as_ref().map(|f| f.deduplication_id.clone()),
                    )
                    .build()
                    .unwrap()
            })
            .collect();
        let out = sqs
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
        assert!(out.failed.is_empty());
    }
}

/// Messages in a queue now, visible and in flight.
pub async fn queue_depth(url: &str) -> usize {
    let attributes = sqs()
        .await
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    attributes
        .values()
        .map(|v| v.parse::<usize>().unwrap())
        .sum()
}

/// Runs futures concurrently on the runtime; their outputs in order.
pub async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("a task"));
    }
    out
}

pub async fn drain(client: &Client, url: &str, wait: Duration) -> Vec<aws_sdk_sqs::types::Message> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let got = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .visibility_timeout(300)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        let empty = got.is_empty();
        out.extend(got);
        if empty && (!out.is_empty() || tokio::time::Instant::now() >= deadline) {
            return out;
        }
        if empty {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn config(queue_url: &str, ack_mode: AckMode) -> Config {
    Config {
        queue_url: queue_url.to_owned(),
        fifo: queue_url.ends_with(".fifo"),
        secret: Some(SecretSource::Value(SECRET.into())),
        secret_refresh: Refresh::default(),
        url_token: None,
        tolerance: Duration::from_secs(300),
        ack_mode,
        allow_unsigned: false,
        retry_budget: Duration::from_secs(5),
        payload_bucket: None,
    }
}

pub fn now_ms() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string()
}

/// The headers Twenty sends with a signed delivery, names lowercased as a Function URL does.
pub fn twenty_headers(body: &str) -> Vec<(String, String)> {
    headers_signed_with(SECRET, body)
}

/// As `twenty_headers`, signed with `secret`.
pub fn headers_signed_with(secret: &str, body: &str) -> Vec<(String, String)> {
    let ts = now_ms();
    vec![
        ("content-type".into(), "application/json".into()),
        ("accept".into(), "application/json, text/plain, */*".into()),
        ("user-agent".into(), "axios/1.7.9".into()),
        ("x-twenty-webhook-timestamp".into(), ts.clone()),
        (
            "x-twenty-webhook-signature".into(),
            signature::sign(secret.as_bytes(), &ts, body.as_bytes()),
        ),
        (
            "x-twenty-webhook-nonce".into(),
            "0123456789abcdef0123456789abcdef".into(),
        ),
    ]
}

pub fn attribute<'m>(m: &'m aws_sdk_sqs::types::Message, name: &str) -> Option<&'m str> {
    m.message_attributes()?.get(name)?.string_value()
}

pub fn envelope(m: &aws_sdk_sqs::types::Message) -> serde_json::Value {
    serde_json::from_str(m.body().expect("body")).expect("envelope is JSON")
}

/// A Twenty single-record payload, keys in the order Twenty writes them.
/// The queued messages for one Twenty delivery `body`, as the ingest function makes them.
pub fn ingest_messages(
    body: &str,
    target: twenty_webhook::envelope::Destination<'_>,
) -> Vec<twenty_webhook::envelope::Message> {
    use twenty_webhook::envelope::{self, Receipt};
    let payload = twenty_webhook::twenty::event::parse(body).expect("a Twenty event");
    let id = envelope::body_sha256(body.as_bytes());
    let receipt = Receipt {
        body_sha256: &id,
        received_at: "2026-11-27T00:00:00.000Z",
        signature_verified: true,
    };
    envelope::messages(&payload, receipt, target).expect("messages")
}

pub fn person_created(record_id: &str) -> String {
    format!(
        r#"{{"targetUrl":"https://example.com/hook","eventName":"person.created","objectMetadata":{{"id":"5f7e0c4e-1c56-4a4b-9a0e-2f6a4cb1a001","nameSingular":"person"}},"workspaceId":"20202020-1c25-4d02-bf25-6aeccf7ea419","webhookId":"8c2b6a4e-77a4-4b5e-9f0e-111111111111","eventDate":"2025-02-10T15:30:45.123Z","record":{{"id":"{record_id}","name":{{"firstName":"Zoë","lastName":"Ng"}},"emails":{{"primaryEmail":"zoe@example.com","additionalEmails":null}},"city":"Paris"}}}}"#
    )
}

/// A Twenty-signed POST as Lambda hands it to the function behind a Function URL (the
/// API Gateway v2 payload), for a stub Runtime API to deliver.
pub fn function_url_event(body: &str) -> String {
    let headers: serde_json::Map<String, serde_json::Value> = twenty_headers(body)
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefghij",
            "domainName": "abcdefghij.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefghij",
            "http": {
                "method": "POST",
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.10",
                "userAgent": "axios/1.7.9"
            },
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": "$default",
            "stage": "$default",
            "time": "10/Feb/2025:15:30:45 +0000",
            "timeEpoch": 1739201445123u64
        },
        "body": body,
        "isBase64Encoded": false
    })
    .to_string()
}

/// A request as a Function URL hands it to the function.
pub fn request(method: &str, headers: &[(String, String)], body: Vec<u8>) -> Request {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri("https://abc.lambda-url.eu-west-1.on.aws/");
    for (k, v) in headers {
        builder = builder.header(k, v);
    }
    builder.body(Body::Binary(body)).unwrap()
}

/// A POST signed as Twenty signs it.
pub fn signed_request(body: &str) -> Request {
    request("POST", &twenty_headers(body), body.as_bytes().to_vec())
}

/// The handler wired to moto, called directly with `lambda_http` requests.
pub struct Harness {
    pub app: App,
    pub inflight: InFlight,
    pub client: aws_sdk_sqs::Client,
    pub url: String,
    /// What the function wrote to its fallback log (undelivered events).
    pub fallback: Arc<Mutex<String>>,
}

impl Harness {
    pub async fn new(fifo: bool, ack_mode: AckMode) -> Self {
        let client = sqs().await;
        let url = new_queue(&client, fifo).await;
        Self::with_config(client, config(&url, ack_mode), moto_endpoint()).await
    }

    pub async fn with_config(client: aws_sdk_sqs::Client, config: Config, endpoint: &str) -> Self {
        let secrets = secrets_of(&config).unwrap();
        Self::with_secrets(client, config, secrets, endpoint).await
    }

    /// With the webhook secrets given (e.g. from a store in moto).
    pub async fn with_secrets(
        client: aws_sdk_sqs::Client,
        config: Config,
        secrets: Rotating<Vec<Secret>>,
        endpoint: &str,
    ) -> Self {
        let url = config.queue_url.clone();
        let fallback = Arc::new(Mutex::new(String::new()));
        let sink = fallback.clone();
        let sdk = sdk_config(endpoint).await;
        let queue_url = url.clone();
        // The sender thread ends once the app (its only dispatcher) is dropped.
        let (dispatcher, _thread) = Dispatcher::start(
            move || {
                let (sdk, url) = (sdk.clone(), queue_url.clone());
                async move {
                    SqsTransport::with_sdk_config(&sdk, &url)
                        .with_payload_store(PayloadStore::with_sdk_config(&sdk))
                }
            },
            Arc::new(move |text: &str| sink.lock().unwrap().push_str(text)),
        );
        let inflight = InFlight::default();
        Self {
            app: App::new(config, secrets, dispatcher, inflight.clone()),
            inflight,
            client,
            url,
            fallback,
        }
    }

    pub async fn post(&self, headers: &[(String, String)], body: &str) -> (u16, serde_json::Value) {
        self.send("POST", headers, body.as_bytes().to_vec()).await
    }

    pub async fn send(
        &self,
        method: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        self.handle(request(method, headers, body)).await
    }

    /// Answers a request, then waits for the sends it started (immediate mode answers first).
    pub async fn handle(&self, request: Request) -> (u16, serde_json::Value) {
        let answer = self.answer(request).await;
        self.settle().await;
        answer
    }

    /// Waits until no send is in flight.
    pub async fn settle(&self) {
        tokio::time::timeout(Duration::from_secs(60), async {
            while self.inflight.active() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("sends finish");
    }

    /// The answer alone: in immediate mode, sends may still be running.
    pub async fn answer(&self, request: Request) -> (u16, serde_json::Value) {
        let response: Response<Body> = self.app.handle(request).await.unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "every answer is JSON"
        );
        let status = response.status().as_u16();
        let json = serde_json::from_slice(response.body().as_ref()).expect("JSON body");
        (status, json)
    }

    pub async fn queued(&self) -> Vec<aws_sdk_sqs::types::Message> {
        drain(&self.client, &self.url, Duration::from_millis(500)).await
    }
}

/// Stores `value` as an SSM SecureString parameter `name` in moto (overwriting).
pub async fn put_secure_string(name: &str, value: &str) {
    twenty_webhook::aws::AwsSecretStore::with_sdk_config(&sdk_config(moto_endpoint()).await)
        .write(
            &twenty_webhook::secrets::Location::Parameter(name.to_owned()),
            value,
        )
        .await
        .expect("moto stores the parameter");
}

/// A fresh DynamoDB table in moto, in the idempotency layout (partition key `id`).
pub async fn new_table() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "idem-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let client = aws_sdk_dynamodb::Client::new(&sdk_config(moto_endpoint()).await);
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    client
        .create_table()
        .table_name(&name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
    name
}

/// The message ids a batch response reports failed.
pub fn failed(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// An SQS event as Lambda's event source delivers it: (messageId, body, group).
pub fn sqs_event(
    records: &[(&str, &str, Option<&str>)],
    fifo: bool,
) -> aws_lambda_events::event::sqs::SqsEvent {
    let arn = if fifo {
        "arn:aws:sqs:us-east-1:123456789012:events.fifo"
    } else {
        "arn:aws:sqs:us-east-1:123456789012:events"
    };
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|(id, body, group)| {
            let mut attributes = serde_json::json!({
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1764201600000",
                "SenderId": "AIDAEXAMPLE",
                "ApproximateFirstReceiveTimestamp": "1764201600001"
            });
            if let Some(group) = group {
                attributes["MessageGroupId"] = (*group).into();
                attributes["MessageDeduplicationId"] = (*id).into();
                attributes["SequenceNumber"] = "18849496460467696128".into();
            }
            serde_json::json!({
                "messageId": id,
                "receiptHandle": format!("receipt-{id}"),
                "body": body,
                "attributes": attributes,
                "messageAttributes": {
                    "eventName": {"stringValue": "person.created", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
                },
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("an SQS event")
}

/// The `webhook-id` the worker gives `envelope` under the default `IDEMPOTENCY_MODE=auto`
/// for an HTTP rule (`Mode::Lean`): the change's, or the envelope's id without a change.
pub fn lean_webhook_id(envelope: &str) -> String {
    use twenty_webhook::worker::{Event, Mode, Queued};
    match Event::parse(envelope.to_owned()).expect("an envelope") {
        Queued::Event(event) => event.delivery_id(Mode::Lean).to_owned(),
        Queued::Claim(_) => panic!("a claim check, not an envelope"),
    }
}
