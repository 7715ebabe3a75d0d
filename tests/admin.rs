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
use support::watch::Watch;
use support::*;

fn admin(twenty: &FakeTwenty, key: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_twenty-admin"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TWENTY_API_URL", &twenty.url)
        .env("TWENTY_API_KEY", key)
        .env("TWENTY_API_REQUESTS_PER_MINUTE", "6000")
        .env("AWS_ENDPOINT_URL", moto_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .args(args)
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
    let watch = Watch::local(
        &queue,
        moto_endpoint(),
        &[
            ("TWENTY_WEBHOOK_SECRET", ""),
            ("TWENTY_WEBHOOK_SECRET_PARAMETER", name.as_str()),
            ("AWS_ENDPOINT_URL_SSM", moto_endpoint()),
        ],
    )
    .await;
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
}
