//! Destinations that want credentials, with real `twenty-worker` processes fed by Lambda's
//! SQS event source (`support::event_source`), their secrets in moto's SSM and Secrets
//! Manager, and local servers that refuse without the right ones: an API-key and a Basic
//! destination, and an OAuth 2.0 token endpoint whose tokens live a few seconds. Every
//! scenario checks that no secret or token reaches a log line.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;
use support::destination::{Answer, Destination, Received};
use support::event_source::{Source, WorkerProcess};
use support::*;
use twenty_webhook::envelope::{Destination as Target, Message};

const WORKER: &str = env!("CARGO_BIN_EXE_twenty-worker");

/// The scenarios time what happens; two at once would time each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Marks every token the issuer makes, so that a log line holding one is found.
const TOKEN_MARK: &str = "tok-7c1e";
const CLIENT_SECRET: &str = "cs-5b0f2d91";

fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

fn events(prefix: &str, count: usize) -> Vec<Message> {
    let target = Target {
        fifo: false,
        payload_bucket: None,
    };
    (0..count)
        .flat_map(|n| ingest_messages(&person_created(&format!("{prefix}{n}")), target))
        .collect()
}

async fn put_secret(name: &str, value: &str) {
    aws_sdk_secretsmanager::Client::new(&sdk_config(moto_endpoint()).await)
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("moto stores the secret");
}

fn settings(rules: serde_json::Value, dlq: &str) -> Vec<(&'static str, String)> {
    vec![
        ("FORWARD_RULES", rules.to_string()),
        ("DEAD_LETTER_QUEUE_URL", dlq.to_owned()),
        ("RETRY_HORIZON_SECS", "3600".to_owned()),
        ("BACKOFF_BASE_SECS", "1".to_owned()),
        ("BACKOFF_CAP_SECS", "2".to_owned()),
        ("BREAKER_OPEN_SECS", "2".to_owned()),
        ("DEADLINE_MARGIN_MS", "2000".to_owned()),
    ]
}

fn source(url: &str) -> Source {
    Source {
        queue_url: url.to_owned(),
        timeout: Duration::from_secs(10),
    }
}

/// Waits until `done` holds, or `within` passes; whether it held.
async fn until(within: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done()
}

/// The webhook-ids a destination answered 2xx to, with how often.
fn taken(requests: &[Received], ok: impl Fn(&Received) -> bool) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for r in requests.iter().filter(|r| ok(r)) {
        *ids.entry(r.headers["webhook-id"].clone()).or_insert(0) += 1;
    }
    ids
}

fn assert_no_secret(output: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !output.contains(secret),
            "a log line holds a secret or a token ({secret})"
        );
    }
    assert!(!output.contains(TOKEN_MARK), "a log line holds a token");
}

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_and_basic_destinations_take_only_the_right_credentials() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (url, dlq) = queues(false, 1000).await;
    let key_parameter = format!("/{}", unique("twenty-test/n8n-key"));
    put_secure_string(&key_parameter, "k-3f9a7c\n").await;
    let password_secret = unique("twenty-test-crm-password");
    put_secret(&password_secret, "pw-83be1d").await;
    let keyed = Destination::start(|r| {
        let right = r.headers.get("x-n8n-key").map(String::as_str) == Some("k-3f9a7c");
        Answer::status(if right { 204 } else { 401 })
    })
    .await;
    let want = basic("crm-sync", "pw-83be1d");
    let basic_dest = Destination::start(move |r| {
        let right = r.headers.get("authorization") == Some(&want);
        Answer::status(if right { 204 } else { 401 })
    })
    .await;
    let rules = json!([
        {"name": "n8n", "events": ["*"], "url": keyed.url,
         "auth": {"type": "apiKey", "header": "X-N8N-Key", "value": {"parameter": key_parameter}}},
        {"name": "crm", "events": ["*"], "url": basic_dest.url,
         "auth": {"type": "basic", "username": "crm-sync", "password": {"secretId": password_secret}}},
        {"name": "bare", "events": ["*"], "url": keyed.url},
    ]);
    let messages = events("k", 5);
    send_all(&url, &messages).await;
    let worker = WorkerProcess::start(WORKER, &source(&url), &settings(rules, &dlq)).await;
    let keyed_ok = |r: &Received| r.headers.contains_key("x-n8n-key");
    let done = until(Duration::from_secs(60), || {
        taken(&keyed.requests(), keyed_ok).len() == 5
            && taken(&basic_dest.requests(), |r| {
                r.headers.contains_key("authorization")
            })
            .len()
                == 5
            && keyed.requests().len() >= 10
    })
    .await;
    let dead = drain(&sqs().await, &dlq, Duration::from_secs(10)).await;
    let output = worker.stop().await;
    assert!(done, "not all delivered\n{output}");
    let keyed_requests = keyed.requests();
    assert!(
        keyed_requests
            .iter()
            .filter(|r| keyed_ok(r))
            .all(|r| r.headers["x-n8n-key"] == "k-3f9a7c"),
        "the key as stored, without its newline"
    );
    let refused = keyed_requests.iter().filter(|r| !keyed_ok(r)).count();
    assert_eq!(refused, 5, "the rule without auth: one call each, refused");
    assert_eq!(dead.len(), 5, "{output}");
    for m in &dead {
        assert_eq!(attribute(m, "failedDestination"), Some("bare"));
        let reason = attribute(m, "failureReason").unwrap_or("");
        assert!(reason.starts_with("destination_auth: "), "{reason}");
        assert!(!m.body().unwrap_or("").contains("k-3f9a7c"));
    }
    assert_no_secret(
        &output,
        &["k-3f9a7c", "pw-83be1d", &basic("crm-sync", "pw-83be1d")],
    );
}

/// A token endpoint: it authenticates the client by HTTP Basic, issues `tok-7c1e-<n>`
/// tokens for `lifetime`, and can be down or refuse the client.
struct Issuer {
    lifetime: Duration,
    state: Mutex<Issued>,
}

#[derive(Default)]
struct Issued {
    /// Each token: the client it went to, when, and whether it was revoked.
    tokens: Vec<(String, Instant, bool)>,
    /// Each request: the client asking, and when.
    requests: Vec<(String, Instant)>,
    down_until: Option<Instant>,
    refuse: bool,
}

impl Issuer {
    async fn start(
        lifetime: Duration,
        setup: impl FnOnce(&mut Issued),
    ) -> (Arc<Self>, Destination) {
        let mut issued = Issued::default();
        setup(&mut issued);
        let issuer = Arc::new(Self {
            lifetime,
            state: Mutex::new(issued),
        });
        let serving = issuer.clone();
        let endpoint = Destination::start(move |r| serving.answer(r)).await;
        (issuer, endpoint)
    }

    fn answer(&self, r: &Received) -> Answer {
        let client = ["client-a", "client-b"]
            .into_iter()
            .find(|c| r.headers.get("authorization") == Some(&basic(c, CLIENT_SECRET)));
        let mut state = self.state.lock().unwrap();
        let now = Instant::now();
        state.requests.push((client.unwrap_or("?").to_owned(), now));
        let form_ok = r.headers.get("content-type").map(String::as_str)
            == Some("application/x-www-form-urlencoded")
            && r.body == "grant_type=client_credentials&scope=crm.objects.contacts.write";
        if state.refuse || client.is_none() || !form_ok {
            return Answer::json(401, json!({"error": "invalid_client"}));
        }
        if state.down_until.is_some_and(|t| now < t) {
            return Answer::status(503);
        }
        let token = format!("{TOKEN_MARK}-{}", state.tokens.len());
        state.tokens.push((token.clone(), now, false));
        Answer::json(
            200,
            json!({"access_token": token, "token_type": "bearer", "expires_in": self.lifetime.as_secs()}),
        )
    }

    /// Whether `authorization` carries a token issued, unrevoked and unexpired.
    fn valid(&self, authorization: Option<&String>) -> bool {
        let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
            return false;
        };
        let state = self.state.lock().unwrap();
        state
            .tokens
            .iter()
            .any(|(t, at, revoked)| t == token && !revoked && at.elapsed() < self.lifetime)
    }

    fn revoke_all(&self) {
        for token in &mut self.state.lock().unwrap().tokens {
            token.2 = true;
        }
    }

    fn requests(&self) -> Vec<(String, Instant)> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn oauth_rule(
    name: &str,
    url: &str,
    token_url: &str,
    client: &str,
    secret: &str,
) -> serde_json::Value {
    json!({"name": name, "events": ["*"], "url": url, "auth": {
        "type": "oauthClientCredentials", "tokenUrl": token_url, "clientId": client,
        "clientSecret": {"parameter": secret}, "scope": "crm.objects.contacts.write"}})
}

/// A destination that takes a valid token only, after `delay`; and the webhook-ids it
/// took, in order.
async fn bearer_destination(
    issuer: &Arc<Issuer>,
    delay: Duration,
) -> (Destination, Arc<Mutex<Vec<String>>>) {
    let checking = issuer.clone();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let taking = accepted.clone();
    let dest = Destination::start(move |r| {
        let valid = checking.valid(r.headers.get("authorization"));
        if valid {
            taking.lock().unwrap().push(r.headers["webhook-id"].clone());
        }
        Answer {
            delay,
            ..Answer::status(if valid { 204 } else { 401 })
        }
    })
    .await;
    (dest, accepted)
}

/// How often each id was taken.
fn counted(ids: &[String]) -> HashMap<&str, usize> {
    let mut out = HashMap::new();
    for id in ids {
        *out.entry(id.as_str()).or_insert(0) += 1;
    }
    out
}

/// One worker process forwarding to `dest` with one OAuth client, `client-a`.
async fn oauth_worker(
    url: &str,
    dlq: &str,
    dest: &str,
    token_url: &str,
    secret: &str,
) -> WorkerProcess {
    let rules = json!([oauth_rule("crm", dest, token_url, "client-a", secret)]);
    WorkerProcess::start(WORKER, &source(url), &settings(rules, dlq)).await
}

async fn client_secret() -> String {
    let name = format!("/{}", unique("twenty-test/oauth-client-secret"));
    put_secure_string(&name, CLIENT_SECRET).await;
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens_are_asked_for_once_per_expiry_by_each_of_two_workers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (url, dlq) = queues(false, 1000).await;
    let secret = client_secret().await;
    let lifetime = Duration::from_secs(5);
    let (issuer, endpoint) = Issuer::start(lifetime, |_| {}).await;
    let (dest, accepted) = bearer_destination(&issuer, Duration::from_millis(800)).await;
    let count = 240;
    let messages = events("o", count);
    send_all(&url, &messages).await;
    // One client id per process, so that the issuer tells their token requests apart.
    let mut workers = Vec::new();
    for client in ["client-a", "client-b"] {
        let rules = json!([oauth_rule("crm", &dest.url, &endpoint.url, client, &secret)]);
        workers.push(WorkerProcess::start(WORKER, &source(&url), &settings(rules, &dlq)).await);
    }
    let all = until(Duration::from_secs(120), || {
        counted(&accepted.lock().unwrap()).len() == count
    })
    .await;
    let mut output = String::new();
    for w in workers {
        output.push_str(&w.stop().await);
    }
    assert!(all, "not all delivered\n{output}");
    let requests = dest.requests();
    let accepted = accepted.lock().unwrap().clone();
    let refused = requests.len() - accepted.len();
    let asked = issuer.requests();
    let first = requests.iter().map(|r| r.at).min().unwrap();
    let last = requests.iter().map(|r| r.at).max().unwrap();
    let span = last.duration_since(first);
    // Renewed at 4.5 s of 5 (the margin is a tenth of so short a lifetime): consecutive
    // requests of one process are at least that far apart.
    for client in ["client-a", "client-b"] {
        let times: Vec<Instant> = asked
            .iter()
            .filter(|(c, _)| c == client)
            .map(|(_, at)| *at)
            .collect();
        assert!(!times.is_empty(), "{client} asked for no token");
        for pair in times.windows(2) {
            let gap = pair[1].duration_since(pair[0]);
            assert!(
                gap >= Duration::from_millis(4300),
                "{client} asked again after {gap:?} ({} requests)",
                times.len()
            );
        }
    }
    assert!(
        asked.iter().all(|(c, _)| c != "?"),
        "every token request authenticated the client"
    );
    assert!(
        counted(&accepted).values().all(|n| *n == 1),
        "each taken once"
    );
    assert!(
        drain(&sqs().await, &dlq, Duration::from_secs(1))
            .await
            .is_empty()
    );
    assert_no_secret(&output, &[CLIENT_SECRET]);
    eprintln!(
        "{count} forwards from two workers over {span:?}, tokens living {lifetime:?}: {} token \
         requests ({:.1} per 1,000 forwards), {refused} refused",
        asked.len(),
        asked.len() as f64 * 1000.0 / count as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_replaced_by_one_new_token() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (url, dlq) = queues(false, 1000).await;
    let secret = client_secret().await;
    let (issuer, endpoint) = Issuer::start(Duration::from_secs(3600), |_| {}).await;
    let checking = issuer.clone();
    let accepted = Arc::new(Mutex::new(0usize));
    let seen = accepted.clone();
    let dest = Destination::start(move |r| {
        if !checking.valid(r.headers.get("authorization")) {
            return Answer::status(401);
        }
        let mut n = seen.lock().unwrap();
        *n += 1;
        // Revoked once ten were taken: the forwards under way carry it still.
        if *n == 10 {
            checking.revoke_all();
        }
        Answer::status(204)
    })
    .await;
    let messages = events("r", 30);
    send_all(&url, &messages).await;
    let worker = oauth_worker(&url, &dlq, &dest.url, &endpoint.url, &secret).await;
    let all = until(Duration::from_secs(60), || *accepted.lock().unwrap() >= 30).await;
    let output = worker.stop().await;
    assert!(all, "not all delivered\n{output}");
    let requests = dest.requests();
    let refused = requests.len() - *accepted.lock().unwrap();
    assert_eq!(
        issuer.requests().len(),
        2,
        "one token, then one after the revocation"
    );
    assert!(refused >= 1, "a forward met the revoked token");
    assert!(
        drain(&sqs().await, &dlq, Duration::from_secs(1))
            .await
            .is_empty()
    );
    assert_no_secret(&output, &[CLIENT_SECRET]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_down_is_retried_and_trips_the_breaker() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (url, dlq) = queues(false, 1000).await;
    let secret = client_secret().await;
    let up_at = Instant::now() + Duration::from_secs(8);
    let (issuer, endpoint) = Issuer::start(Duration::from_secs(3600), |s| {
        s.down_until = Some(up_at);
    })
    .await;
    let (dest, accepted) = bearer_destination(&issuer, Duration::ZERO).await;
    let messages = events("d", 20);
    send_all(&url, &messages).await;
    let worker = oauth_worker(&url, &dlq, &dest.url, &endpoint.url, &secret).await;
    let all = until(Duration::from_secs(90), || {
        counted(&accepted.lock().unwrap()).len() == 20
    })
    .await;
    let output = worker.stop().await;
    assert!(all, "not all delivered once it came back\n{output}");
    let asked = issuer.requests();
    let while_down = asked.iter().filter(|(_, at)| *at < up_at).count();
    assert!(
        output.contains("circuit breaker opened") && output.contains("crm"),
        "the token endpoint's failures trip the rule's breaker\n{output}"
    );
    assert!(
        (1..=12).contains(&while_down),
        "{while_down} token requests in 8 s down"
    );
    assert!(
        dest.requests().iter().all(|r| r.at >= up_at),
        "no forward without a token"
    );
    assert!(
        drain(&sqs().await, &dlq, Duration::from_secs(1))
            .await
            .is_empty()
    );
    assert_no_secret(&output, &[CLIENT_SECRET]);
    eprintln!("token endpoint down 8 s: {while_down} token requests while down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_the_token_endpoint_refuses_is_dead_lettered_with_why() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (url, dlq) = queues(false, 1000).await;
    let secret = client_secret().await;
    let (_issuer, endpoint) = Issuer::start(Duration::from_secs(3600), |s| s.refuse = true).await;
    let dest = Destination::ok().await;
    let messages = events("i", 3);
    send_all(&url, &messages).await;
    let worker = oauth_worker(&url, &dlq, &dest.url, &endpoint.url, &secret).await;
    let mut dead = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while dead.len() < 3 && Instant::now() < deadline {
        dead.extend(drain(&sqs().await, &dlq, Duration::from_secs(2)).await);
    }
    let output = worker.stop().await;
    assert_eq!(dead.len(), 3, "{output}");
    let ids: HashSet<String> = dead
        .iter()
        .map(|m| envelope(m)["id"].as_str().unwrap_or("").to_owned())
        .collect();
    let sent: HashSet<String> = messages.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, sent);
    for m in &dead {
        let reason = attribute(m, "failureReason").unwrap_or("");
        assert!(reason.starts_with("destination_auth: "), "{reason}");
        assert!(reason.contains("invalid_client"), "{reason}");
        assert_eq!(attribute(m, "failedDestination"), Some("crm"));
    }
    assert!(
        dest.requests().is_empty(),
        "nothing forwarded without a token"
    );
    assert_no_secret(&output, &[CLIENT_SECRET, &basic("client-a", CLIENT_SECRET)]);
}
