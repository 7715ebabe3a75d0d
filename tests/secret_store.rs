//! The webhook secret kept in SSM Parameter Store or Secrets Manager (moto's server): read
//! on first need, rotated without a restart, a store that is down, and a flood of bad
//! signatures that must not become a flood of store calls.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::{
    Harness, config, headers_signed_with, moto_endpoint, new_queue, put_secure_string, sdk_config,
    sqs,
};
use twenty_webhook::aws::AwsSecretStore;
use twenty_webhook::ingest::config::{AckMode, Refresh, SecretSource, parse_secrets};
use twenty_webhook::secrets::{Location, Rotating, SecretStore, StoreRead, StoredSecret};

/// Counts the reads that moto answered.
struct Counting {
    inner: AwsSecretStore,
    reads: Arc<AtomicUsize>,
}

impl SecretStore for Counting {
    fn read<'a>(&'a self, secret: &'a StoredSecret) -> StoreRead<'a> {
        // Counted once answered, so a count seen means the value is in place.
        Box::pin(async move {
            let read = self.inner.read(secret).await;
            self.reads.fetch_add(1, Ordering::SeqCst);
            read
        })
    }
}

const FAST: Refresh = Refresh {
    every: Duration::from_secs(3600),
    floor: Duration::from_millis(300),
    timeout: Duration::from_secs(3),
};

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A harness whose secret is read from `location` in moto, through `endpoint`.
async fn harness(
    location: Location,
    refresh: Refresh,
    endpoint: &str,
) -> (Harness, Arc<AtomicUsize>) {
    let client = sqs().await;
    let url = new_queue(&client, false).await;
    let reads = Arc::new(AtomicUsize::new(0));
    let store = Counting {
        inner: AwsSecretStore::with_sdk_config(&sdk_config(endpoint).await),
        reads: reads.clone(),
    };
    let secret = StoredSecret {
        setting: "TWENTY_WEBHOOK_SECRET_PARAMETER",
        location,
    };
    let mut config = config(&url, AckMode::AfterEnqueue);
    config.secret = Some(SecretSource::Stored(secret.clone()));
    let secrets = Rotating::stored(Arc::new(store), secret, parse_secrets, refresh);
    let harness = Harness::with_secrets(client, config, secrets, moto_endpoint()).await;
    (harness, reads)
}

async fn post_signed(h: &Harness, secret: &str, record: &str) -> (u16, serde_json::Value) {
    let body = support::person_created(record);
    h.post(&headers_signed_with(secret, &body), &body).await
}

#[tokio::test]
async fn an_ssm_secret_is_read_on_first_need_and_rotated_without_a_restart() {
    let name = format!("/twenty/{}", unique("ssm"));
    put_secure_string(&name, "old-secret").await;
    let (h, reads) = harness(Location::Parameter(name.clone()), FAST, moto_endpoint()).await;
    assert_eq!(
        reads.load(Ordering::SeqCst),
        0,
        "nothing is read before a request"
    );

    assert_eq!(post_signed(&h, "old-secret", "r1").await.0, 200);
    assert_eq!(reads.load(Ordering::SeqCst), 1);
    assert_eq!(post_signed(&h, "old-secret", "r2").await.0, 200);
    assert_eq!(reads.load(Ordering::SeqCst), 1, "the value is kept");

    // Rotation, overlap: both are accepted, the new one at once (one re-read).
    put_secure_string(&name, "new-secret,old-secret").await;
    tokio::time::sleep(FAST.floor).await;
    assert_eq!(post_signed(&h, "new-secret", "r3").await.0, 200);
    assert_eq!(reads.load(Ordering::SeqCst), 2);
    assert_eq!(post_signed(&h, "old-secret", "r4").await.0, 200);

    assert_eq!(h.queued().await.len(), 4);
}

#[tokio::test]
async fn a_secret_gone_from_the_store_is_refused_after_the_refresh() {
    let name = format!("/twenty/{}", unique("ssm"));
    put_secure_string(&name, "new-secret,old-secret").await;
    let refresh = Refresh {
        every: Duration::from_secs(1),
        ..FAST
    };
    let (h, reads) = harness(Location::Parameter(name.clone()), refresh, moto_endpoint()).await;
    assert_eq!(post_signed(&h, "old-secret", "r1").await.0, 200);

    put_secure_string(&name, "new-secret").await;
    tokio::time::sleep(refresh.every).await;
    // This request finds the value old: it is answered with it, and a re-read starts.
    assert_eq!(post_signed(&h, "new-secret", "r2").await.0, 200);
    for _ in 0..100 {
        if reads.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reads.load(Ordering::SeqCst), 2, "re-read in the background");
    let (status, body) = post_signed(&h, "old-secret", "r3").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_signature"))
    );
    assert_eq!(h.queued().await.len(), 2);
}

#[tokio::test]
async fn a_secrets_manager_secret_is_read_and_rotated() {
    let id = unique("twenty-webhook");
    let sm = aws_sdk_secretsmanager::Client::new(&sdk_config(moto_endpoint()).await);
    sm.create_secret()
        .name(&id)
        .secret_string("sm-old")
        .send()
        .await
        .expect("moto creates the secret");
    let (h, reads) = harness(Location::SecretId(id.clone()), FAST, moto_endpoint()).await;
    assert_eq!(post_signed(&h, "sm-old", "r1").await.0, 200);

    sm.put_secret_value()
        .secret_id(&id)
        .secret_string("sm-new")
        .send()
        .await
        .expect("moto rotates the secret");
    tokio::time::sleep(FAST.floor).await;
    assert_eq!(post_signed(&h, "sm-new", "r2").await.0, 200);
    // Missed again within the floor of the last read: refused with no call.
    assert_eq!(post_signed(&h, "sm-old", "r3").await.0, 401);
    assert_eq!(
        reads.load(Ordering::SeqCst),
        2,
        "one read per miss past the floor"
    );
}

#[tokio::test]
async fn a_store_that_is_down_gets_503_and_a_bounded_number_of_calls() {
    // Nothing listens there: the store is unreachable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let refresh = Refresh {
        floor: Duration::from_secs(60),
        ..FAST
    };
    let (h, reads) = harness(Location::Parameter("/twenty/any".into()), refresh, &closed).await;
    for i in 0..20 {
        let (status, body) = post_signed(&h, "whatever", &format!("r{i}")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("secret_unavailable"))
        );
        assert!(!body.to_string().contains("whatever"));
    }
    assert_eq!(reads.load(Ordering::SeqCst), 1, "one call per floor");
    assert!(h.queued().await.is_empty());

    // A parameter that does not exist is the same answer.
    let (h, _) = harness(
        Location::Parameter("/twenty/missing".into()),
        FAST,
        moto_endpoint(),
    )
    .await;
    assert_eq!(post_signed(&h, "whatever", "r").await.0, 503);
}

#[tokio::test]
async fn a_flood_of_bad_signatures_costs_one_store_call_per_floor() {
    let name = format!("/twenty/{}", unique("flood"));
    put_secure_string(&name, "the-secret").await;
    let (h, reads) = harness(Location::Parameter(name), FAST, moto_endpoint()).await;
    let start = std::time::Instant::now();
    let body = support::person_created("r");
    let forged = headers_signed_with("not-the-secret", &body);
    let mut refused = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        let answers = forged_at_once(&h, &forged, &body).await;
        refused += answers.iter().filter(|s| **s == 401).count();
    }
    let floors = start.elapsed().as_millis() / FAST.floor.as_millis() + 1;
    let calls = reads.load(Ordering::SeqCst) as u128;
    assert!(refused >= 40, "the flood ran ({refused} refusals)");
    assert!(
        calls <= floors + 1,
        "{calls} store calls for {refused} bad signatures in {floors} floors"
    );
}

/// Four forged requests at once (they race for the re-read).
async fn forged_at_once(h: &Harness, headers: &[(String, String)], body: &str) -> [u16; 4] {
    let request = || support::request("POST", headers, body.as_bytes().to_vec());
    let (a, b, c, d) = tokio::join!(
        h.answer(request()),
        h.answer(request()),
        h.answer(request()),
        h.answer(request())
    );
    [a.0, b.0, c.0, d.0]
}
