//! `twenty-admin` against a local server that answers like Twenty's webhook endpoints
//! (`tests/support/fake_twenty.py`), moto's SSM and Secrets Manager, and, for the test
//! delivery, the real ingest function under `cargo lambda watch` reading the secret the
//! command stored.

mod support;

use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use support::destination::Destination;
use support::twenty::{API_KEY, FakeTwenty};
use support::watch::{Watch, http_client};
use support::*;

/// The command with Twenty at `api_url` and every AWS service in moto.
fn admin_command(api_url: &str, key: &str, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_twenty-admin"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TWENTY_API_URL", api_url)
        .env("TWENTY_API_KEY", key)
        .env("TWENTY_API_REQUESTS_PER_MINUTE", "6000")
        .env("AWS_ENDPOINT_URL", moto_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .args(args);
    command
}

fn admin(twenty: &FakeTwenty, key: &str, args: &[&str]) -> Output {
    admin_command(&twenty.url, key, args)
        .output()
        .expect("run twenty-admin")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn webhooks(twenty: &FakeTwenty) -> Vec<Value> {
    reqwest::get(format!("{}/_control/webhooks", twenty.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn parameter(name: &str) -> Option<String> {
    aws_sdk_ssm::Client::new(&sdk_config(moto_endpoint()).await)
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .ok()
        .and_then(|o| o.parameter)
        .and_then(|p| p.value)
}

/// The real ingest function, reading its secret from the SSM parameter `name`.
async fn ingest_reading(queue: &str, name: &str, extra: &[(&str, &str)]) -> Watch {
    let mut env = vec![
        ("TWENTY_WEBHOOK_SECRET", ""),
        ("TWENTY_WEBHOOK_SECRET_PARAMETER", name),
        ("AWS_ENDPOINT_URL_SSM", moto_endpoint()),
    ];
    env.extend_from_slice(extra);
    Watch::local(queue, moto_endpoint(), &env).await
}

fn unique(name: &str) -> String {
    format!("/twenty/admin-{}-{}-{name}", std::process::id(), now_ms())
}

/// From nothing: one webhook, its secret stored before Twenty has it, a signed test
/// delivery the real ingest function accepts with that secret; run again, nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_makes_one_webhook_and_a_second_run_changes_nothing() {
    let twenty = FakeTwenty::start();
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let name = unique("secret");
    let watch = ingest_reading(&queue, &name, &[]).await;
    let args = [
        "connect",
        "--webhook-url",
        watch.url.as_str(),
        "--secret-parameter",
        name.as_str(),
        "--events",
        "person.*,company.*",
    ];
    let first = admin(&twenty, API_KEY, &args);
    let said = text(&first);
    assert_eq!(first.status.code(), Some(0), "{said}\n{}", watch.logs());
    assert!(
        said.contains("created") && said.contains("test delivery: 200"),
        "{said}"
    );
    let hooks = webhooks(&twenty).await;
    assert_eq!(hooks.len(), 1);
    let secret = hooks[0]["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64, "32 random bytes in hex");
    assert_eq!(parameter(&name).await.as_deref(), Some(secret.as_str()));
    assert_eq!(hooks[0]["operations"], json!(["person.*", "company.*"]));
    assert!(
        !said.contains(&secret),
        "the secret is never printed: {said}"
    );
    let queued = drain(&sqs, &queue, Duration::from_secs(5)).await;
    assert_eq!(queued.len(), 1, "the test event reached the queue");
    assert_eq!(envelope(&queued[0])["record"]["twentyAdminTest"], true);

    let second = admin(&twenty, API_KEY, &args);
    let said = text(&second);
    assert_eq!(second.status.code(), Some(0), "{said}");
    assert!(said.contains("nothing changed"), "{said}");
    let again = webhooks(&twenty).await;
    assert_eq!(again.len(), 1, "never a second webhook");
    assert_eq!(again[0]["updatedAt"], hooks[0]["updatedAt"]);
    assert_eq!(parameter(&name).await.as_deref(), Some(secret.as_str()));

    // send-test alone.
    let test = admin(
        &twenty,
        API_KEY,
        &[
            "send-test",
            "--webhook-url",
            &watch.url,
            "--secret-parameter",
            &name,
        ],
    );
    assert_eq!(test.status.code(), Some(0), "{}", text(&test));
}

/// A webhook that exists (its URL written another way, with an old token): adopted, its
/// secret stored, its operations set; `--show-secret` prints it once. (Multi-threaded: the
/// destination answers while the command runs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_adopts_the_webhook_twenty_has() {
    let twenty = FakeTwenty::start();
    let destination = Destination::ok().await;
    // As a person might have typed it: the scheme upper-cased, an explicit default port
    // would be dropped the same way; and the token of before.
    let stored_url = format!(
        "{}?token=old",
        destination.url.replacen("http://", "HTTP://", 1)
    );
    let seeded: Value = reqwest::Client::new()
        .post(format!("{}/_control/webhooks", twenty.url))
        .json(&json!({"targetUrl": stored_url, "operations": ["*.*"], "secret": "adopt-me-0123456789"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let name = unique("adopted");
    let out = admin(
        &twenty,
        API_KEY,
        &[
            "connect",
            "--webhook-url",
            &format!("{}?token=new", destination.url),
            "--secret-parameter",
            &name,
            "--events",
            "person.*",
            "--show-secret",
        ],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("updated (targetUrl, operations)"), "{said}");
    assert_eq!(
        said.matches("adopt-me-0123456789").count(),
        1,
        "shown once: {said}"
    );
    let hooks = webhooks(&twenty).await;
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["id"], seeded["id"]);
    assert!(
        hooks[0]["targetUrl"]
            .as_str()
            .unwrap()
            .ends_with("?token=new")
    );
    assert_eq!(
        parameter(&name).await.as_deref(),
        Some("adopt-me-0123456789")
    );
    // The test delivery reached the destination, signed as Twenty signs.
    let got = destination.requests();
    assert_eq!(got.len(), 1);
    assert!(got[0].headers.contains_key("x-twenty-webhook-signature"));

    // Connected again with a new secret: what is shown is the one Twenty now signs with.
    let out = admin(
        &twenty,
        API_KEY,
        &[
            "connect",
            "--webhook-url",
            &format!("{}?token=new", destination.url),
            "--secret-parameter",
            &name,
            "--events",
            "person.*",
            "--new-secret",
            "--propagation-secs",
            "0",
            "--no-wait",
            "--show-secret",
        ],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let now = twenty_secret(&twenty).await;
    assert_ne!(now, "adopt-me-0123456789");
    assert!(
        said.contains(&format!("secret (keep it out of logs): {now}")),
        "the new secret shown: {said}"
    );
    assert!(
        !said.contains("adopt-me-0123456789"),
        "not the old one: {said}"
    );
}

/// A key Twenty refuses, a server too old for the webhook API, a webhook Twenty will not
/// create: exit 1 naming which, the store as it was, the key never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_cause_and_leave_nothing_half_done() {
    let twenty = FakeTwenty::start();
    let destination = Destination::ok().await;
    let name = unique("refused");
    let connect = |key: &str| {
        admin(
            &twenty,
            key,
            &[
                "connect",
                "--webhook-url",
                &destination.url,
                "--secret-parameter",
                &name,
            ],
        )
    };
    let out = connect("wrong-key-value");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("TWENTY_API_KEY") && !text(&out).contains("wrong-key-value"));
    assert_eq!(parameter(&name).await, None);

    twenty.configure(json!({"webhook_api": "legacy"})).await;
    let out = connect(API_KEY);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("upgrade Twenty"), "{}", text(&out));
    twenty.configure(json!({"webhook_api": "none"})).await;
    let out = connect(API_KEY);
    assert!(text(&out).contains("no webhook endpoint"), "{}", text(&out));

    twenty
        .configure(json!({"webhook_api": "current", "refuse_webhook_create": true}))
        .await;
    let out = connect(API_KEY);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("did not take the new webhook") && said.contains("holds what it held before"),
        "{said}"
    );
    assert_eq!(
        parameter(&name).await,
        None,
        "the new secret was taken back"
    );
    assert!(webhooks(&twenty).await.is_empty());
    assert!(destination.requests().is_empty(), "no test delivery");

    // A parameter SSM will not write (names under /aws are reserved): no webhook is made.
    twenty
        .configure(json!({"webhook_api": "current", "refuse_webhook_create": false}))
        .await;
    let out = admin(
        &twenty,
        API_KEY,
        &[
            "connect",
            "--webhook-url",
            &destination.url,
            "--secret-parameter",
            "/aws/reserved-name",
        ],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("/aws/reserved-name"), "{said}");
    assert!(webhooks(&twenty).await.is_empty(), "nothing made: {said}");

    // Twenty unreachable: exit 1 naming TWENTY_API_URL, nothing stored.
    let out = admin_command(
        "http://127.0.0.1:9",
        API_KEY,
        &[
            "connect",
            "--webhook-url",
            &destination.url,
            "--secret-parameter",
            &name,
        ],
    )
    .output()
    .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("TWENTY_API_URL could not be reached"),
        "{said}"
    );
    assert_eq!(parameter(&name).await, None);
}

/// Twenty's secret now (what it signs with at this moment).
async fn twenty_secret(twenty: &FakeTwenty) -> String {
    webhooks(twenty).await[0]["secret"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A POST to the function signed as Twenty signs with `secret`; its status.
async fn signed_post(url: &str, secret: &str, id: &str) -> u16 {
    let body = person_created(id);
    let mut request = http_client().post(url).body(body.clone());
    for (k, v) in headers_signed_with(secret, &body) {
        request = request.header(k, v);
    }
    request
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// A rotation against the real ingest function, its secret re-read every second: every
/// delivery signed with whatever secret Twenty has at that moment is accepted all through
/// it; after `--finish` the old secret is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_refuses_no_delivery_and_finish_drops_the_old_secret() {
    let twenty = std::sync::Arc::new(FakeTwenty::start());
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let name = unique("rotated");
    let watch = ingest_reading(
        &queue,
        &name,
        &[
            ("SECRET_REFRESH_SECS", "1"),
            ("SECRET_REREAD_FLOOR_SECS", "1"),
        ],
    )
    .await;
    let url = watch.url.clone();
    let common = [
        "--webhook-url",
        url.as_str(),
        "--secret-parameter",
        name.as_str(),
    ];
    let connect = admin(&twenty, API_KEY, &[&["connect"][..], &common[..]].concat());
    assert_eq!(connect.status.code(), Some(0), "{}", text(&connect));
    let old = twenty_secret(&twenty).await;

    // Deliveries all through the rotation, each signed with Twenty's secret of the moment.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (twenty, url, stop) = (twenty.clone(), url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let secret = twenty_secret(&twenty).await;
                statuses.push(signed_post(&url, &secret, &format!("rot-{n}")).await);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            statuses
        })
    };
    let rotate_args: Vec<String> = [
        &["rotate-secret", "--propagation-secs", "3", "--no-wait"][..],
        &common,
    ]
    .concat()
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let twenty_for_run = twenty.clone();
    let rotated = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = rotate_args.iter().map(String::as_str).collect();
        admin(&twenty_for_run, API_KEY, &args)
    })
    .await
    .unwrap();
    assert_eq!(rotated.status.code(), Some(0), "{}", text(&rotated));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses = sender.await.unwrap();
    assert!(statuses.len() > 10, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200),
        "none refused: {statuses:?}\n{}",
        watch.logs()
    );
    let new = twenty_secret(&twenty).await;
    assert_ne!(new, old);
    assert_eq!(parameter(&name).await, Some(format!("{new},{old}")));
    assert!(!text(&rotated).contains(&new) && !text(&rotated).contains(&old));

    let finish = admin(
        &twenty,
        API_KEY,
        &[&["rotate-secret", "--finish"][..], &common[..]].concat(),
    );
    assert_eq!(finish.status.code(), Some(0), "{}", text(&finish));
    assert_eq!(parameter(&name).await.as_deref(), Some(new.as_str()));
    // Once the function has re-read it, the old secret is refused, the new one taken.
    let mut refused = false;
    for n in 0..50 {
        if signed_post(&url, &old, &format!("old-{n}")).await == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        refused,
        "the old secret is refused after --finish\n{}",
        watch.logs()
    );
    assert_eq!(signed_post(&url, &new, "new-1").await, 200);
}

/// A small stack in moto's CloudFormation whose outputs are those of `template.yaml` that
/// `--stack` reads, pointing at `url`, the parameter `secret`, and the queues and table.
async fn stack_with_outputs(outputs: &[(&str, &str)]) -> String {
    let name = format!("admin-{}-{}", std::process::id(), now_ms());
    let mut template = String::from(
        "AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  Placeholder:\n    Type: AWS::SQS::Queue\nOutputs:\n",
    );
    for (key, value) in outputs {
        template.push_str(&format!("  {key}:\n    Value: {value:?}\n"));
    }
    aws_sdk_cloudformation::Client::new(&sdk_config(moto_endpoint()).await)
        .create_stack()
        .stack_name(&name)
        .template_body(template)
        .send()
        .await
        .expect("moto creates the stack");
    name
}

/// `connect --stack` reads the Function URL, the secret's parameter and the token
/// requirement from the stack's outputs; `status --stack` then reads the whole chain:
/// Twenty's webhook, the queues (the dead letters counted, and left visible), the open
/// breakers, reconciliation's last run and watermarks, the alarms in ALARM. A part that
/// cannot be read is shown as such, and the rest is still read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_is_connected_by_name_and_status_shows_the_chain() {
    let twenty = FakeTwenty::start();
    let destination = Destination::ok().await;
    let sqs = sqs().await;
    let (queue, dead_letters, table) = (
        new_queue(&sqs, false).await,
        new_queue(&sqs, false).await,
        new_table().await,
    );
    let secret_name = unique("stack");
    let token = "tok_stack_0123456789abcdef";
    let stack = stack_with_outputs(&[
        ("WebhookUrl", destination.url.as_str()),
        ("WebhookSecretParameterName", secret_name.as_str()),
        ("SecretRefreshSeconds", "300"),
        ("WebhookUrlTokenRequired", "true"),
        ("QueueUrl", queue.as_str()),
        ("DeadLetterQueueUrl", dead_letters.as_str()),
        ("IdempotencyTableName", table.as_str()),
    ])
    .await;
    let with_token = |args: &[&str]| {
        let mut command = admin_command(&twenty.url, API_KEY, args);
        command.env("TWENTY_WEBHOOK_URL_TOKEN", token);
        command
    };

    // Without the token the stack requires: exit 2 naming the setting, nothing made.
    let out = admin(&twenty, API_KEY, &["connect", "--stack", &stack]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("TWENTY_WEBHOOK_URL_TOKEN"),
        "{}",
        text(&out)
    );
    assert!(webhooks(&twenty).await.is_empty());
    // A stack that does not exist: exit 1 naming it.
    let out = admin(&twenty, API_KEY, &["send-test", "--stack", "no-such-stack"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no-such-stack"), "{}", text(&out));

    let out = with_token(&["connect", "--stack", &stack])
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains(token), "the token is never printed: {said}");
    let hooks = webhooks(&twenty).await;
    assert_eq!(hooks.len(), 1);
    assert_eq!(
        hooks[0]["targetUrl"].as_str().unwrap(),
        format!("{}?token={token}", destination.url)
    );
    let secret = hooks[0]["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        parameter(&secret_name).await.as_deref(),
        Some(secret.as_str())
    );
    assert_eq!(destination.requests().len(), 1, "the test delivery");

    // What status reads: dead letters, the worker's table, an alarm, the queue's age.
    for (destination, reason) in [
        ("crm", "destination_refused: crm: answered 400"),
        ("crm,n8n", "horizon_passed: 24 h"),
        ("n8n", "destination_refused: n8n: answered 410"),
    ] {
        let attribute = |v: &str| {
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .unwrap()
        };
        sqs.send_message()
            .queue_url(&dead_letters)
            .message_body("{}")
            .message_attributes("failedDestination", attribute(destination))
            .message_attributes("failureReason", attribute(reason))
            .send()
            .await
            .unwrap();
    }
    sqs.send_message()
        .queue_url(&queue)
        .message_body("{}")
        .send()
        .await
        .unwrap();
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk_config(moto_endpoint()).await);
    let in_an_hour = (std::time::SystemTime::now() + Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    let items = [
        vec![
            ("id", S("routes#worker".into())),
            (
                "routes",
                S(r#"[["crm",["*.*"]],["n8n",["person.*"]]]"#.into()),
            ),
        ],
        vec![
            ("id", S("breaker#crm".into())),
            ("openUntil", N(in_an_hour.to_string())),
            ("failures", N("5".into())),
        ],
        vec![
            ("id", S("breaker#n8n".into())),
            ("openUntil", N("0".into())),
            ("failures", N("1".into())),
        ],
        vec![
            ("id", S("reconcile#run".into())),
            (
                "run",
                S(
                    json!({"finishedAt": "2026-11-30T01:00:05Z", "verdict": "complete",
                    "failed": false, "read": 7, "queued": 2, "objects": ["people"]})
                    .to_string(),
                ),
            ),
        ],
        vec![
            ("id", S("reconcile#watermark#people".into())),
            ("at", S("2026-11-30T00:55:00.000Z".into())),
        ],
    ];
    for item in items {
        let mut put = dynamo.put_item().table_name(&table);
        for (k, v) in item {
            put = put.item(k, v);
        }
        put.send().await.unwrap();
    }
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk_config(moto_endpoint()).await);
    let alarm = format!("{stack}-DeadLetterQueueNotEmptyAlarm-X1");
    cloudwatch
        .put_metric_alarm()
        .alarm_name(&alarm)
        .namespace("AWS/SQS")
        .metric_name("ApproximateNumberOfMessagesVisible")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Maximum)
        .period(300)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(
            aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanOrEqualToThreshold,
        )
        .send()
        .await
        .unwrap();
    cloudwatch
        .set_alarm_state()
        .alarm_name(&alarm)
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("3 dead letters")
        .send()
        .await
        .unwrap();

    // What CloudWatch would hold for the queue (SQS publishes it; moto does not).
    cloudwatch
        .put_metric_data()
        .namespace("AWS/SQS")
        .metric_data(
            aws_sdk_cloudwatch::types::MetricDatum::builder()
                .metric_name("ApproximateAgeOfOldestMessage")
                .dimensions(
                    aws_sdk_cloudwatch::types::Dimension::builder()
                        .name("QueueName")
                        .value(queue.rsplit('/').next().unwrap())
                        .build(),
                )
                .value(41.0)
                .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from(
                    std::time::SystemTime::now(),
                ))
                .build(),
        )
        .send()
        .await
        .unwrap();

    let out = with_token(&["status", "--stack", &stack, "--json"])
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains(token) && !said.contains(&secret), "{said}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let hook = &report["twenty"]["ok"]["webhook"];
    assert_eq!(hook["id"], hooks[0]["id"], "{report:#}");
    assert_eq!(hook["signed"], true);
    assert_eq!(hook["sameUrl"], true, "the token too");
    assert!(
        hook["targetUrl"]
            .as_str()
            .unwrap()
            .ends_with("token=%E2%80%A6")
    );
    assert_eq!(report["queue"]["ok"]["depth"]["visible"], 1, "{report:#}");
    assert_eq!(
        report["queue"]["ok"]["oldestAgeSecs"]["ok"], 41.0,
        "{report:#}"
    );
    let dead = &report["deadLetters"]["ok"];
    assert_eq!(dead["complete"], true, "{report:#}");
    assert_eq!(dead["census"]["byDestination"], json!({"crm": 2, "n8n": 2}));
    assert_eq!(
        dead["census"]["byReason"],
        json!({"destination_refused": 2, "horizon_passed": 1})
    );
    let open = report["openBreakers"]["ok"].as_array().expect("read");
    assert_eq!(open.len(), 1, "{report:#}");
    assert_eq!(
        (
            open[0]["destination"].as_str(),
            open[0]["failures"].as_u64()
        ),
        (Some("crm"), Some(5))
    );
    let rec = &report["reconciliation"]["ok"];
    assert_eq!(rec["lastRun"]["queued"], 2);
    assert_eq!(
        rec["watermarks"],
        json!([["people", "2026-11-30T00:55:00.000Z"]])
    );
    let alarms = report["alarms"]["ok"].as_array().expect("read");
    assert_eq!(alarms.len(), 1, "{report:#}");
    assert_eq!(alarms[0]["name"], alarm);

    // The screen: one line a part.
    let out = with_token(&["status", "--stack", &stack]).output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    for part in [
        "points at this stack",
        "1 waiting, 0 in flight, 0 delayed; oldest 41 s",
        "by reason destination_refused 2, horizon_passed 1",
        "crm open until",
        "last run 2026-11-30T01:00:05Z: complete",
        "DeadLetterQueueNotEmptyAlarm",
    ] {
        assert!(screen.contains(part), "{part:?} in\n{screen}");
    }

    // Counting (twice) took nothing: the three dead letters are there to be received.
    assert_eq!(
        drain(&sqs, &dead_letters, Duration::from_secs(2))
            .await
            .len(),
        3
    );

    // No Twenty settings and a table that does not exist: those parts say so, the rest is
    // read, and the exit code is 1.
    let out = with_token(&["status", "--stack", &stack, "--json", "--table", "missing"])
        .env_remove("TWENTY_API_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(report["twenty"]["notConfigured"].is_string(), "{report:#}");
    assert!(
        report["reconciliation"]["unreadable"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{report:#}"
    );
    assert!(
        report["openBreakers"]["unreadable"].is_string(),
        "{report:#}"
    );
    assert_eq!(report["queue"]["ok"]["depth"]["visible"], 1, "{report:#}");
    assert!(report["alarms"]["ok"].is_array(), "{report:#}");
}

async fn secret_value(id: &str) -> Option<String> {
    aws_sdk_secretsmanager::Client::new(&sdk_config(moto_endpoint()).await)
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .ok()
        .and_then(|o| o.secret_string)
}

/// A stack whose secret is in Secrets Manager (`WebhookSecretId`): connect creates the
/// secret with the fresh value before Twenty has it; a rotation through the stack ends with
/// Twenty and the secret holding the same new value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_with_its_secret_in_secrets_manager() {
    let twenty = FakeTwenty::start();
    let destination = Destination::ok().await;
    let id = format!("twenty-admin-{}-{}", std::process::id(), now_ms());
    let stack = stack_with_outputs(&[
        ("WebhookUrl", destination.url.as_str()),
        ("WebhookSecretId", id.as_str()),
        ("SecretRefreshSeconds", "300"),
        ("WebhookUrlTokenRequired", "false"),
    ])
    .await;
    let out = admin(&twenty, API_KEY, &["connect", "--stack", &stack]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let first = twenty_secret(&twenty).await;
    assert_eq!(secret_value(&id).await.as_deref(), Some(first.as_str()));

    let out = admin(
        &twenty,
        API_KEY,
        &[
            "rotate-secret",
            "--stack",
            &stack,
            "--propagation-secs",
            "0",
            "--overlap-secs",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let second = twenty_secret(&twenty).await;
    assert_ne!(second, first);
    assert_eq!(secret_value(&id).await.as_deref(), Some(second.as_str()));
    let out = admin(&twenty, API_KEY, &["send-test", "--stack", &stack]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        destination.requests().len(),
        2,
        "connect's test delivery and this one"
    );

    // A stack without a table or queues among its outputs: those parts say so, and that
    // is no failure to read.
    let out = admin(&twenty, API_KEY, &["status", "--stack", &stack, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let why = report["reconciliation"]["notConfigured"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("has no IdempotencyTableName output"),
        "{report:#}"
    );
    assert!(report["queue"]["notConfigured"].is_string(), "{report:#}");
    assert_eq!(
        report["twenty"]["ok"]["webhook"]["sameUrl"], true,
        "{report:#}"
    );
}
