//! End to end through the real Lambda runtime interface: `cargo lambda watch` runs the
//! function, Twenty-signed POSTs go to its local Function URL, and moto's SQS receives.
//! SQS is reached through a gate proxy, so the test can hold SQS back at will.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::watch::{Watch, http_client};
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards TCP to moto, but only while the gate is open; connections wait for it.
struct Gate {
    open: watch::Sender<bool>,
    endpoint: String,
}

impl Gate {
    async fn start(upstream: &str) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let (open, _) = watch::channel(true);
        let gate = Arc::new(Self { open, endpoint });
        let g = gate.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut is_open = g.open.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    // Hold the bytes, not the connection: the client sees a slow SQS.
                    let mut first = [0u8; 1];
                    if inbound.peek(&mut first).await.is_err() {
                        return;
                    }
                    if is_open.wait_for(|o| *o).await.is_err() {
                        return;
                    }
                    if let Ok(mut out) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        gate
    }

    fn set(&self, open: bool) {
        self.open.send_replace(open);
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    body: &str,
) -> (u16, serde_json::Value) {
    let mut request = http.post(url).body(body.to_owned());
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let response = request.send().await.expect("the function answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_signed_posts_through_cargo_lambda_watch() {
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let gate = Gate::start(moto_endpoint()).await;
    // Two secrets, as during a rotation: the test signs with the second.
    let secrets = format!("old-secret,{SECRET}");
    let watch = Watch::local(
        &queue,
        &gate.endpoint,
        &[("TWENTY_WEBHOOK_SECRET", secrets.as_str())],
    )
    .await;
    let http = http_client();

    // 1. Signed as Twenty signs: 200, and the message is in the queue.
    let body = person_created("e2e-1");
    let (status, json) = post(&http, &watch.url, &twenty_headers(&body), &body).await;
    assert_eq!(status, 200, "{json}\n{}", watch.logs());
    let queued = drain(&sqs, &queue, Duration::from_secs(10)).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(envelope(&queued[0])["id"], json["id"]);
    assert_eq!(envelope(&queued[0])["recordId"], "e2e-1");

    // 2. Tampered after signing: 401, and nothing is queued.
    let headers = twenty_headers(&body);
    let tampered = body.replace("Paris", "Paris!");
    let (status, json) = post(&http, &watch.url, &headers, &tampered).await;
    assert_eq!(status, 401, "{json}");
    assert_eq!(json["error"], "invalid_signature");
    assert!(drain(&sqs, &queue, Duration::from_secs(2)).await.is_empty());

    // 3. Immediate mode: with SQS held back, the 200 still comes, before the message is
    //    anywhere; once SQS answers again, the message lands.
    gate.set(false);
    let body = person_created("e2e-held");
    let (status, json) = post(&http, &watch.url, &twenty_headers(&body), &body).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["status"], "accepted");
    assert!(
        drain(&sqs, &queue, Duration::ZERO).await.is_empty(),
        "SQS was held back, yet the message is already queued"
    );
    gate.set(true);
    let queued = drain(&sqs, &queue, Duration::from_secs(20)).await;
    assert_eq!(queued.len(), 1, "{}", watch.logs());
    assert_eq!(envelope(&queued[0])["recordId"], "e2e-held");

    // 4. A burst as Twenty sends them (up to 20 at once): every one acknowledged and queued.
    let sends = (0..20).map(|i| {
        let http = http.clone();
        let url = watch.url.clone();
        async move {
            let body = person_created(&format!("burst-{i}"));
            post(&http, &url, &twenty_headers(&body), &body).await.0
        }
    });
    let statuses: Vec<u16> = join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let mut got = Vec::new();
    for _ in 0..20 {
        got.extend(drain(&sqs, &queue, Duration::from_secs(5)).await);
        if got.len() >= 20 {
            break;
        }
    }
    let mut ids: Vec<String> = got
        .iter()
        .map(|m| envelope(m)["recordId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "{ids:?}");
}

/// The whole chain under `cargo lambda watch`: a Twenty-signed POST to `twenty-webhook`,
/// the queue, `twenty-worker` invoked as Lambda's SQS event source would invoke it, and a
/// local destination, where `standardwebhooks` verifies what arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twenty_event_reaches_a_destination_through_both_functions() {
    const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let destination = support::destination::Destination::ok().await;
    let rules = format!(
        r#"[{{"name":"local","events":["person.*"],"url":"{}","secret":"{KEY}"}}]"#,
        destination.url
    );
    let watch = Watch::local(
        &queue,
        moto_endpoint(),
        &[("FORWARD_RULES", rules.as_str())],
    )
    .await;
    let http = http_client();

    let body = person_created("chain-1");
    let (status, json) = post(&http, &watch.url, &twenty_headers(&body), &body).await;
    assert_eq!(status, 200, "{json}\n{}", watch.logs());
    let queued = drain(&sqs, &queue, Duration::from_secs(10)).await;
    assert_eq!(queued.len(), 1);

    let answer = invoke_worker(&http, &watch, &queue, &queued).await;
    assert_eq!(
        answer["batchItemFailures"],
        serde_json::json!([]),
        "{answer}\n{}",
        watch.logs()
    );

    let got = destination.requests();
    assert_eq!(got.len(), 1, "{}", watch.logs());
    assert_eq!(
        got[0].body,
        queued[0].body().unwrap(),
        "the envelope as queued"
    );
    assert_eq!(got[0].headers["webhook-id"], json["id"].as_str().unwrap());
    support::standard_webhooks_verify(KEY, &got[0].body, &got[0].headers)
        .expect("standardwebhooks verifies the forward");
}

/// Plays Lambda's SQS event source: the queued messages as the records Lambda shapes, sent
/// to `twenty-worker` through watch's invoke API. Returns the worker's answer.
async fn invoke_worker(
    http: &reqwest::Client,
    watch: &Watch,
    queue: &str,
    queued: &[aws_sdk_sqs::types::Message],
) -> serde_json::Value {
    let arn = format!(
        "arn:aws:sqs:us-east-1:123456789012:{}",
        queue.rsplit('/').next().unwrap()
    );
    let records: Vec<serde_json::Value> = queued
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, serde_json::Value> = m
                .attributes()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone().into()))
                .collect();
            serde_json::json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    let base = watch.url.split("/lambda-url/").next().unwrap();
    http.post(format!(
        "{base}/2015-03-31/functions/twenty-worker/invocations"
    ))
    .json(&serde_json::json!({ "Records": records }))
    .send()
    .await
    .expect("the worker answers")
    .json()
    .await
    .expect("JSON")
}

/// The production settings under `cargo lambda watch`: the webhook secret and the
/// forwarding rules in SSM (moto), a URL token, JSON logs. The EMF lines both functions
/// wrote are checked against the EMF specification by `tests/check_emf.py`, and their
/// counts against what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_secrets_url_token_json_logs_and_emf_metrics_under_watch() {
    const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const TOKEN: &str = "e2e-url-token-0123456789";
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let destination = support::destination::Destination::ok().await;
    let prefix = format!("/twenty/e2e-{}", std::process::id());
    let (secret_name, rules_name) = (format!("{prefix}/secret"), format!("{prefix}/rules"));
    put_secure_string(&secret_name, SECRET).await;
    let rules = format!(
        r#"[{{"name":"local","events":["person.*"],"url":"{}","secret":"{KEY}"}}]"#,
        destination.url
    );
    put_secure_string(&rules_name, &rules).await;
    let watch = Watch::local(
        &queue,
        moto_endpoint(),
        &[
            ("TWENTY_WEBHOOK_SECRET", ""),
            ("TWENTY_WEBHOOK_SECRET_PARAMETER", secret_name.as_str()),
            ("FORWARD_RULES_PARAMETER", rules_name.as_str()),
            ("AWS_ENDPOINT_URL_SSM", moto_endpoint()),
            ("TWENTY_WEBHOOK_URL_TOKEN", TOKEN),
            ("METRICS_SERVICE", "e2e-metrics"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ],
    )
    .await;
    let http = http_client();
    let url = format!("{}?token={TOKEN}", watch.url);

    for id in ["m-1", "m-2"] {
        let body = person_created(id);
        let (status, json) = post(&http, &url, &twenty_headers(&body), &body).await;
        assert_eq!(status, 200, "{json}\n{}", watch.logs());
    }
    let body = person_created("m-3");
    let tampered = body.replace("Paris", "Lyon");
    let (status, json) = post(&http, &url, &twenty_headers(&body), &tampered).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("invalid_signature"))
    );
    let (status, json) = post(&http, &watch.url, &twenty_headers(&body), &body).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("invalid_url_token"))
    );

    let queued = drain(&sqs, &queue, Duration::from_secs(10)).await;
    assert_eq!(queued.len(), 2);
    let answer = invoke_worker(&http, &watch, &queue, &queued).await;
    assert_eq!(
        answer["batchItemFailures"],
        serde_json::json!([]),
        "{answer}"
    );
    assert_eq!(destination.requests().len(), 2);

    let logs = std::fs::read_to_string(&watch.log).unwrap();
    assert!(!logs.contains(TOKEN) && !logs.contains(SECRET) && !logs.contains(KEY));
    let totals = emf_totals(&logs);
    let total = |key: &str| totals.get(key).and_then(|v| v.as_f64()).unwrap_or(0.0);
    let service = "Service=e2e-metrics";
    for (metric, want) in [
        (format!("Received|{service}"), 4.0),
        (format!("Accepted|{service}"), 2.0),
        (format!("Refused|{service}|Reason=invalid_signature"), 1.0),
        (format!("Refused|{service}|Reason=invalid_url_token"), 1.0),
        (format!("Queued|{service}"), 2.0),
        (format!("Undelivered|{service}"), 0.0),
        (format!("Handled|{service}"), 2.0),
        (format!("Forwarded|{service}|Destination=local"), 2.0),
        (format!("ForwardFailed|{service}|Destination=local"), 0.0),
    ] {
        assert_eq!(total(&metric), want, "{metric} in {totals:?}");
    }
    assert!(totals.contains_key(&format!("SendLatency|{service}")));
    assert!(totals.contains_key(&format!("EventAge|{service}")));

    // JSON logs: an accepted delivery's one line (its metrics, written by the send on the
    // sender thread after the answer) carries the request id and names the event; so does
    // each worker line, through the invocation's span.
    let all: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let accepted: Vec<&serde_json::Value> = all.iter().filter(|v| v["Accepted"] == 1.0).collect();
    assert_eq!(accepted.len(), 2, "one line per accepted delivery\n{logs}");
    for line in accepted {
        assert!(
            line["requestId"].as_str().is_some_and(|id| !id.is_empty()),
            "{line}"
        );
        assert!(
            line["id"].as_str().is_some_and(|id| id.len() == 64),
            "{line}"
        );
        assert_eq!(line["eventName"], "person.created", "{line}");
        assert_eq!(line["Queued"], 1.0, "{line}");
    }
    let line = all
        .iter()
        .find(|v| v["fields"]["message"] == "delivered")
        .unwrap_or_else(|| panic!("no JSON line \"delivered\" in\n{logs}"));
    assert!(line.get("span").is_none(), "spans listed once: {line}");
    let spans = line["spans"].as_array().cloned().unwrap_or_default();
    let field = |name: &str| {
        spans
            .iter()
            .chain(std::iter::once(&line["fields"]))
            .find_map(|s| s[name].as_str().map(str::to_owned))
    };
    assert!(
        field("requestId").is_some_and(|id| !id.is_empty()),
        "{line}"
    );
    assert!(field("id").is_some_and(|id| id.len() == 64), "{line}");
    assert_eq!(field("event").as_deref(), Some("person.created"), "{line}");
}

/// The EMF documents in `logs`, checked and summed by `tests/check_emf.py`.
fn emf_totals(logs: &str) -> serde_json::Map<String, serde_json::Value> {
    use std::io::Write;
    let mut child = std::process::Command::new(support::python())
        .arg(project_dir().join("tests/check_emf.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tests/check_emf.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(logs.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "EMF documents break the specification:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["documents"].as_u64().unwrap() > 0, "no EMF document");
    report["totals"].as_object().unwrap().clone()
}

/// `twenty-reconcile` as the scheduled Lambda function, through the real runtime interface:
/// an EventBridge scheduled event in, the changes of the fake Twenty API queued as
/// version-2 envelopes, the watermark kept in the table, and the next run reading on from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_reconciliation_under_watch() {
    let twenty = support::twenty::FakeTwenty::start();
    for i in 0..3 {
        twenty
            .upsert("people", serde_json::json!({"id": format!("p{i}")}))
            .await;
    }
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let table = new_table().await;
    let watch = Watch::local(
        &queue,
        moto_endpoint(),
        &[
            ("TWENTY_API_URL", twenty.url.as_str()),
            ("TWENTY_API_KEY", support::twenty::API_KEY),
            ("IDEMPOTENCY_TABLE", table.as_str()),
            ("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint()),
            ("RECONCILE_OVERLAP_SECS", "0"),
            ("RECONCILE_SETTLE_SECS", "0"),
            ("TWENTY_API_REQUESTS_PER_MINUTE", "6000"),
        ],
    )
    .await;
    let http = http_client();
    let base = watch.url.split("/lambda-url/").next().unwrap().to_owned();
    let invoke = || async {
        let scheduled = serde_json::json!({
            "version": "0", "id": "e1", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": "2026-11-27T03:00:00Z",
            "region": "us-east-1", "resources": [], "detail": {}
        });
        http.post(format!(
            "{base}/2015-03-31/functions/twenty-reconcile/invocations"
        ))
        .json(&scheduled)
        .send()
        .await
        .expect("the reconciler answers")
        .json::<serde_json::Value>()
        .await
        .expect("JSON")
    };
    let first = invoke().await;
    assert_eq!(first["complete"], true, "{first}\n{}", watch.logs());
    let people = first["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["object"] == "people")
        .cloned()
        .unwrap();
    assert_eq!(people["queued"], 3, "{first}");
    let queued = drain(&sqs, &queue, Duration::from_secs(5)).await;
    assert_eq!(queued.len(), 3);
    assert!(queued.iter().all(|m| envelope(m)["version"] == 2));

    // The next run reads on from the watermark: nothing new, nothing queued.
    twenty
        .upsert("people", serde_json::json!({"id": "p9"}))
        .await;
    let second = invoke().await;
    assert_eq!(second["complete"], true, "{second}");
    let queued = drain(&sqs, &queue, Duration::from_secs(2)).await;
    let ids: Vec<String> = queued
        .iter()
        .map(|m| envelope(m)["recordId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["p9"], "{second}");

    // An object the key may not read fails the invocation, naming it; the others are read.
    twenty
        .configure(serde_json::json!({"forbidden": ["companies"]}))
        .await;
    twenty
        .upsert("opportunities", serde_json::json!({"id": "o1"}))
        .await;
    let third = invoke().await;
    let error = third["errorMessage"].as_str().unwrap_or_default();
    assert!(
        error.contains("objects failed: companies"),
        "{third}\n{}",
        watch.logs()
    );
    assert_eq!(drain(&sqs, &queue, Duration::from_secs(2)).await.len(), 1);

    // Each run wrote its metrics: what it read, queued and skipped, and whether it failed.
    let totals = emf_totals(&watch.logs());
    let total = |name: &str| -> f64 {
        totals
            .iter()
            .filter(|(k, _)| k.split('|').next() == Some(name))
            .filter_map(|(_, v)| v.as_f64())
            .sum()
    };
    assert_eq!(total("ReconcileQueued"), 5.0, "{totals:?}");
    assert_eq!(total("ReconcileObjectsFailed"), 1.0, "{totals:?}");
    assert_eq!(total("ReconcileRunFailed"), 1.0, "{totals:?}");
    assert!(total("ReconcileRequests") >= 6.0, "{totals:?}");

    // The last run is kept for `twenty-admin status`: the failed one, and its objects.
    let kept = aws_sdk_dynamodb::Client::new(&sdk_config(moto_endpoint()).await)
        .get_item()
        .table_name(&table)
        .key(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S("reconcile#run".into()),
        )
        .send()
        .await
        .unwrap()
        .item
        .expect("the last run is recorded");
    let run: serde_json::Value = serde_json::from_str(kept["run"].as_s().unwrap()).expect("JSON");
    assert_eq!(run["failed"], true, "{run}");
    assert_eq!(run["queued"], 1, "{run}");
    assert!(
        run["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "people"),
        "{run}"
    );
}
