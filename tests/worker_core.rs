//! The worker's plain parts: patterns, the router with a ledger, batches (FIFO groups in
//! order), forwarding rules, and Standard Webhooks signatures checked by the Python
//! `standardwebhooks` package (an implementation that is not ours).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use twenty_webhook::metrics::Tally;
use twenty_webhook::worker::batch::{self, Bounds, Item, Process};
use twenty_webhook::worker::rules::{self as forward, RulesError, parse_rules};
use twenty_webhook::worker::standard_webhooks::WebhookKey;
use twenty_webhook::worker::targets::http;
use twenty_webhook::worker::web;
use twenty_webhook::worker::{
    Begin, Event, HandlerError, Ledger, LedgerFuture, Mode, NoLedger, Outcome, Pattern, Queued,
    Router,
};

#[test]
fn patterns_match_object_and_action() {
    let cases = [
        ("person.created", "person.created", true),
        ("person.created", "person.updated", false),
        ("person.*", "person.deleted", true),
        ("person.*", "company.deleted", false),
        ("*.deleted", "company.deleted", true),
        ("*.deleted", "company.destroyed", false),
        ("*", "metadata.fieldMetadata.created", true),
        ("*.*", "pet.created", true),
        // The object is everything before the last dot.
        (
            "metadata.fieldMetadata.*",
            "metadata.fieldMetadata.created",
            true,
        ),
        ("metadata.*", "metadata.fieldMetadata.created", false),
        (
            "fieldMetadata.created",
            "metadata.fieldMetadata.created",
            false,
        ),
    ];
    for (pattern, name, expected) in cases {
        assert_eq!(
            Pattern::parse(pattern).unwrap().matches(name),
            expected,
            "{pattern} ~ {name}"
        );
    }
    for bad in [
        "",
        "person",
        ".created",
        "person.",
        "per*son.created",
        "person. created",
    ] {
        assert!(Pattern::parse(bad).is_err(), "{bad:?}");
    }
}

fn event(id: &str, name: &str) -> Arc<Event> {
    let (object, action) = name.rsplit_once('.').unwrap();
    let body = format!(
        r#"{{"version":1,"id":"{id}","eventName":"{name}","objectName":"{object}","action":"{action}","recordId":"r","record":{{"id":"r","emails":{{"primaryEmail":"a@b.c"}}}},"updatedFields":["emails"],"claimCheck":null}}"#
    );
    match Event::parse(body).unwrap() {
        Queued::Event(e) => Arc::new(*e),
        Queued::Claim(_) => unreachable!(),
    }
}

/// Counts the runs of each handler; `fail` names handlers that fail.
fn counting_router(
    names: &[(&str, &str)],
    fail: &[&str],
) -> (Router, Arc<Mutex<HashMap<String, usize>>>) {
    let runs = Arc::new(Mutex::new(HashMap::new()));
    let mut router = Router::new();
    for (name, pattern) in names {
        let (runs, name_owned, fails) = (runs.clone(), name.to_string(), fail.contains(name));
        router = router
            .on(name, &[pattern], move |_event| {
                let (runs, name) = (runs.clone(), name_owned.clone());
                async move {
                    *runs.lock().unwrap().entry(name).or_insert(0) += 1;
                    if fails {
                        Err(HandlerError::new("down").retry_after(Duration::from_secs(7)))
                    } else {
                        Ok(())
                    }
                }
            })
            .unwrap();
    }
    (router, runs)
}

#[tokio::test]
async fn every_matching_handler_runs() {
    let (router, runs) = counting_router(
        &[
            ("people", "person.*"),
            ("deletes", "*.deleted"),
            ("all", "*"),
        ],
        &[],
    );
    let outcome = router
        .dispatch(event("e1", "person.deleted"), Arc::new(NoLedger))
        .await;
    assert_eq!(
        outcome,
        Outcome::Done {
            handled: 3,
            skipped: 0
        }
    );
    let outcome = router
        .dispatch(event("e2", "company.created"), Arc::new(NoLedger))
        .await;
    assert_eq!(
        outcome,
        Outcome::Done {
            handled: 1,
            skipped: 0
        }
    );
    assert_eq!(runs.lock().unwrap()["all"], 2);
    let (router, _) = counting_router(&[("people", "person.*")], &[]);
    assert_eq!(
        router
            .dispatch(event("e3", "pet.created"), Arc::new(NoLedger))
            .await,
        Outcome::Unrouted
    );
    assert!(
        Router::new()
            .on("a", &["*"], |_| async { Ok(()) })
            .unwrap()
            .on("a", &["*"], |_| async { Ok(()) })
            .is_err(),
        "names are unique"
    );
}

/// An in-memory ledger with the DynamoDB ledger's semantics, for the router alone.
#[derive(Default)]
struct MemoryLedger(Mutex<HashMap<String, bool>>);

impl Ledger for MemoryLedger {
    fn begin<'a>(
        &'a self,
        key: &'a str,
        _message_id: Option<&'a str>,
        _mode: Mode,
    ) -> LedgerFuture<'a, Begin> {
        Box::pin(async move {
            let mut map = self.0.lock().unwrap();
            Ok(match map.get(key) {
                Some(true) => Begin::Done,
                Some(false) => Begin::Busy(Duration::from_secs(30)),
                None => {
                    map.insert(key.to_owned(), false);
                    Begin::Proceed
                }
            })
        })
    }
    fn complete<'a>(&'a self, key: &'a str) -> LedgerFuture<'a, ()> {
        Box::pin(async move {
            self.0.lock().unwrap().insert(key.to_owned(), true);
            Ok(())
        })
    }
    fn failed<'a>(&'a self, key: &'a str, _mode: Mode) -> LedgerFuture<'a, Option<u32>> {
        Box::pin(async move {
            self.0.lock().unwrap().remove(key);
            Ok(None)
        })
    }
    fn dead_lettered<'a>(&'a self, key: &'a str, _message_id: &'a str) -> LedgerFuture<'a, ()> {
        Box::pin(async move {
            self.0.lock().unwrap().insert(key.to_owned(), true);
            Ok(())
        })
    }
    fn done<'a>(&'a self, key: &'a str) -> LedgerFuture<'a, bool> {
        Box::pin(async move { Ok(self.0.lock().unwrap().get(key) == Some(&true)) })
    }
}

#[tokio::test]
async fn a_redelivery_repeats_only_the_handler_that_failed() {
    let (router, runs) = counting_router(&[("crm", "person.*"), ("n8n", "*")], &["n8n"]);
    let ledger = Arc::new(MemoryLedger::default());
    let first = router
        .dispatch(event("e1", "person.updated"), ledger.clone())
        .await;
    let Outcome::Failed(failures) = first else {
        panic!("{first:?}")
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].handler.as_deref(), Some("n8n"));
    assert_eq!(failures[0].retry_after, Some(Duration::from_secs(7)));
    let again = router
        .dispatch(event("e1", "person.updated"), ledger.clone())
        .await;
    assert!(matches!(again, Outcome::Failed(_)));
    let runs = runs.lock().unwrap();
    assert_eq!(runs["crm"], 1, "done once, skipped on redelivery");
    assert_eq!(runs["n8n"], 2, "the failed one runs again");
}

struct Recorder {
    seen: Mutex<Vec<String>>,
    fail: Vec<&'static str>,
    running: AtomicUsize,
    most: AtomicUsize,
}

impl Process for Recorder {
    async fn process(
        &self,
        item: &Item,
        _bounds: Bounds,
        _tally: &Tally,
    ) -> Result<(), HandlerError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(item.message_id.clone());
        if self.fail.contains(&item.message_id.as_str()) {
            Err(HandlerError::new("handler failed"))
        } else {
            Ok(())
        }
    }
}

fn recorder(fail: Vec<&'static str>) -> Arc<Recorder> {
    Arc::new(Recorder {
        seen: Mutex::new(vec![]),
        fail,
        running: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
    })
}

const NO_BOUNDS: Bounds = Bounds {
    start_by: None,
    stop_at: None,
};

fn item(id: &str, group: Option<&str>) -> Item {
    Item {
        message_id: id.into(),
        group: group.map(str::to_owned),
        ..Item::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_standard_batch_runs_concurrently_within_its_bound() {
    let r = recorder(vec!["m3"]);
    let items: Vec<Item> = (0..10).map(|i| item(&format!("m{i}"), None)).collect();
    let failed = batch::run(r.clone(), items, false, 4, NO_BOUNDS, Arc::default()).await;
    let ids: Vec<&str> = failed.iter().map(|f| f.message_id.as_str()).collect();
    assert_eq!(ids, ["m3"]);
    assert_eq!(r.seen.lock().unwrap().len(), 10);
    assert_eq!(r.most.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn a_fifo_group_stops_at_its_first_failure_while_others_go_on() {
    let r = recorder(vec!["a1"]);
    let items = vec![
        item("a0", Some("person:1")),
        item("b0", Some("person:2")),
        item("a1", Some("person:1")),
        item("b1", Some("person:2")),
        item("a2", Some("person:1")),
    ];
    let failed = batch::run(r.clone(), items, true, 10, NO_BOUNDS, Arc::default()).await;
    let ids: Vec<(&str, &str)> = failed
        .iter()
        .map(|f| (f.message_id.as_str(), f.failure.reason.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("a1", "handler failed"),
            ("a2", "an earlier message of its group failed")
        ]
    );
    let seen = r.seen.lock().unwrap().clone();
    assert!(!seen.contains(&"a2".to_owned()), "a2 is not handled");
    let order = |id: &str| seen.iter().position(|s| s == id).unwrap();
    assert!(order("a0") < order("a1") && order("b0") < order("b1"));
}

#[test]
fn envelopes_and_versions() {
    assert!(matches!(
        Event::parse("not json".into()),
        Err(twenty_webhook::worker::EventError::NotAnEnvelope)
    ));
    assert!(matches!(
        Event::parse(r#"{"version":3,"id":"x"}"#.into()),
        Err(twenty_webhook::worker::EventError::UnknownVersion(3))
    ));
    let e = event("e1", "person.updated");
    assert_eq!(e.object_name, "person");
    assert_eq!(e.updated_fields(), ["emails"]);
    let record: serde_json::Value = e.record().unwrap();
    assert_eq!(record["emails"]["primaryEmail"], "a@b.c");
    assert!(!e.reconciled);
}

/// A delivered event and the same change reconciled share the change key; a later change
/// of the record does not.
#[test]
fn the_change_key_is_the_same_for_a_delivered_and_a_reconciled_change() {
    let envelope = |version: u32, origin: &str, updated: &str| {
        let body = format!(
            r#"{{"version":{version},"id":"{version}{updated}","eventName":"person.updated","objectName":"person","action":"updated","recordId":"r-1","record":{{"id":"r-1","createdAt":"2026-11-01T00:00:00.000Z","updatedAt":"{updated}","deletedAt":null}}{origin}}}"#
        );
        match Event::parse(body).unwrap() {
            twenty_webhook::worker::Queued::Event(e) => *e,
            _ => panic!("an event"),
        }
    };
    let delivered = envelope(1, "", "2026-11-02T10:00:00.123Z");
    let reconciled = envelope(
        2,
        r#","origin":"reconciliation""#,
        "2026-11-02T10:00:00.123Z",
    );
    let later = envelope(1, "", "2026-11-02T10:05:00.000Z");
    assert_ne!(delivered.id, reconciled.id);
    assert_eq!(delivered.change, reconciled.change);
    assert_eq!(
        delivered.change.as_deref(),
        Some("person:r-1@2026-11-02T10:00:00.123Z")
    );
    assert_ne!(delivered.change, later.change);
    assert!(reconciled.reconciled && !delivered.reconciled);
    // The same instant written two ways is one change.
    assert_eq!(
        envelope(1, "", "2026-11-02T10:00:00Z").change,
        envelope(
            2,
            r#","origin":"reconciliation""#,
            "2026-11-02T10:00:00.000Z"
        )
        .change
    );

    // A soft delete, then the hard delete of the same record (whose record still shows the
    // soft delete's time): two events, not one change.
    let deletion = |action: &str| {
        let body = format!(
            r#"{{"version":1,"id":"{action}","eventName":"person.{action}","objectName":"person","action":"{action}","recordId":"r-1","record":{{"id":"r-1","updatedAt":"U","deletedAt":"D"}}}}"#
        );
        match Event::parse(body).unwrap() {
            twenty_webhook::worker::Queued::Event(e) => *e,
            _ => panic!("an event"),
        }
    };
    assert_eq!(
        deletion("deleted").change.as_deref(),
        Some("person:r-1@deleted:D")
    );
    assert_eq!(deletion("destroyed").change, None);
    // A restore leaves `updatedAt` as it was: keyed on the change, it would be skipped as
    // the update before it.
    assert_eq!(deletion("restored").change, None);

    // A deletion whose record is the one before it (no `deletedAt`) is not taken for the
    // update that set that `updatedAt`.
    let before = |action: &str| {
        let body = format!(
            r#"{{"version":1,"id":"b-{action}","eventName":"person.{action}","objectName":"person","action":"{action}","recordId":"r-1","record":{{"id":"r-1","updatedAt":"U","deletedAt":null}}}}"#
        );
        match Event::parse(body).unwrap() {
            twenty_webhook::worker::Queued::Event(e) => *e,
            _ => panic!("an event"),
        }
    };
    assert_eq!(before("updated").change.as_deref(), Some("person:r-1@U"));
    assert_eq!(
        before("deleted").change.as_deref(),
        Some("person:r-1@deleted:U")
    );
}

const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[test]
fn forwarding_rules_are_checked_and_errors_never_show_a_value() {
    let rules = parse_rules(&format!(
        r#"[{{"name":"n8n","events":["person.*","*.deleted"],"url":"https://n8n.example.com/webhook/x","secret":"{KEY}","headers":{{"Authorization":"Bearer hunter2"}},"timeoutMs":5000}},
            {{"events":["*"],"url":"http://127.0.0.1:9/x"}}]"#
    ))
    .unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[1].name, "rule-2");
    assert_eq!(rules[0].timeout, Duration::from_secs(5));
    assert_eq!(rules[1].timeout, forward::DEFAULT_TIMEOUT);
    assert!(!format!("{rules:?}").contains("MfKQ9r8"), "no key in Debug");

    let bad = [
        (r#"{"events":["*"]}"#.to_owned(), "not a JSON array"),
        (r#"[{"events":["*"],"url":"ftp://x"}]"#.into(), "rule 1 (rule-1): `url`"),
        (r#"[{"name":"a","events":[],"url":"https://x"}]"#.into(), "rule 1 (a): `events`"),
        (r#"[{"name":"a","events":["pe*rson.created"],"url":"https://x"}]"#.into(), "pattern"),
        (r#"[{"name":"a","events":["*"],"url":"https://x","secret":"hunter2"}]"#.into(), "`secret`"),
        (r#"[{"name":"a","events":["*"],"url":"https://x","secrets":"whsec_hunter2"}]"#.into(), "unknown field `secrets`"),
        (r#"[{"name":"a","events":["*"],"url":"https://x","headers":"Bearer hunter2"}]"#.into(), "`headers`"),
        (r#"[{"name":"a","events":["*"],"url":"https://x","headers":{"webhook-id":"hunter2"}}]"#.into(), "set by the worker"),
        (r#"[{"name":"a","events":["*"],"url":"https://x","timeoutMs":0}]"#.into(), "`timeoutMs`"),
        (r#"[{"name":"a","events":["*"],"url":"https://x"},{"name":"a","events":["*"],"url":"https://y"}]"#.into(), "rule 2 (a): another rule"),
        (r#"[{"name":"a","events":["*"],"url":"https://x","secret":"whsec_hunter2" "#.into(), "invalid JSON at line 1"),
        (r#"[{"name":"a","events":["*"],"url":"https://x","maxPerSecond":0}]"#.into(), "`maxPerSecond`"),
        (r#"[{"name":"a","events":["*"],"url":"https://x","maxPerSecond":"8"}]"#.into(), "`maxPerSecond`"),
        (r#"[{"name":"a","events":["*"],"url":"https://x","retryAllErrors":"yes"}]"#.into(), "`retryAllErrors`"),
        (r#"[{"name":"a","events":["*"],"url":"https://x","auth":{"type":"apiKey","header":"X-Key","value":"hunter2"}}]"#.into(), "rule 1 (a): `auth.value` must name where the secret is kept"),
        (r#"[{"name":"a","events":["*"],"url":"https://x","headers":{"authorization":"hunter2"},"auth":{"type":"basic","username":"u","password":{"parameter":"/p"}}}]"#.into(), "header `authorization` is set by `auth`"),
        (r#"[{"name":"a","events":["*"],"url":"https://x","auth":{"type":"apiKey","header":"Webhook-Signature","value":{"parameter":"/p"}}}]"#.into(), "set by the worker"),
        (r#"[{"name":"a","events":["*"],"url":"https://x","auth":{"type":"oauthClientCredentials","tokenUrl":"http://login.example.com/t","clientId":"c","clientSecret":{"secretId":"s"}}}]"#.into(), "`auth.tokenUrl` must be an https:// URL"),
        (r#"[{"name":"a","events":["*"],"queueUrl":"https://sqs.us-east-1.amazonaws.com/1/q","auth":{"type":"basic","username":"u","password":{"parameter":"/p"}}}]"#.into(), "`auth`"),
    ];
    // Hop-by-hop and framing headers belong to the connection; a header given twice in
    // different case would be sent twice.
    for header in [
        "Transfer-Encoding",
        "connection",
        "TE",
        "upgrade",
        "Host",
        "content-length",
        "Keep-Alive",
    ] {
        let text = format!(
            r#"[{{"name":"a","events":["*"],"url":"https://x","headers":{{"{header}":"hunter2"}}}}]"#
        );
        let message = parse_rules(&text).unwrap_err().to_string();
        assert!(message.contains("set by the worker"), "{header}: {message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
    let twice = r#"[{"name":"a","events":["*"],"url":"https://x","headers":{"X-Key":"hunter2","x-key":"hunter3"}}]"#;
    let message = parse_rules(twice).unwrap_err().to_string();
    assert!(message.contains("more than once"), "{message}");
    assert!(!message.contains("hunter"), "{message}");
    let paced = parse_rules(
        r#"[{"events":["*"],"url":"https://x","maxPerSecond":0.5,"retryAllErrors":true}]"#,
    )
    .unwrap();
    assert_eq!(paced[0].max_per_second, Some(0.5));
    assert!(paced[0].retry_all_errors && !rules[0].retry_all_errors);
    assert!(web::is_permanent(400, false) && web::is_permanent(404, false));
    for status in [408, 425, 429, 500, 503, 302] {
        assert!(!web::is_permanent(status, false), "{status}");
    }
    assert!(!web::is_permanent(404, true), "retryAllErrors");
    for (text, expected) in bad {
        let err = parse_rules(&text).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(expected), "{text}: {message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(matches!(
            err,
            RulesError::NotAnArray(_) | RulesError::Rule { .. }
        ));
    }
}

/// Standard Webhooks signatures, verified by the Python `standardwebhooks` package.
#[test]
fn signatures_verify_with_the_standardwebhooks_package() {
    let rules = parse_rules(&format!(
        r#"[{{"name":"a","events":["*"],"url":"https://x","secret":"{KEY}","headers":{{"x-extra":"1"}}}}]"#
    ))
    .unwrap();
    let body = r#"{"version":1,"id":"abc","record":{"name":"Zoë"}}"#;
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let spec: &dyn std::any::Any = rules[0].target.as_ref();
    let Some(target) = spec.downcast_ref::<http::HttpTarget>() else {
        panic!("an HTTP rule")
    };
    let headers = http::headers(
        target,
        "abc",
        timestamp,
        "application/json",
        body.as_bytes(),
    );
    let map: HashMap<String, String> = headers.into_iter().collect();
    assert_eq!(map["webhook-id"], "abc");
    assert_eq!(map["x-extra"], "1");
    assert!(map["webhook-signature"].starts_with("v1,"));
    support::standard_webhooks_verify(KEY, body, &map).expect("standardwebhooks verifies it");
    // A changed body does not verify.
    let tampered = body.replace("Zoë", "Zoe");
    assert!(support::standard_webhooks_verify(KEY, &tampered, &map).is_err());
    assert!(WebhookKey::parse("whsec_").is_err());
}

#[test]
fn destinations_are_logged_by_host_alone() {
    assert_eq!(
        web::origin("https://user:pa55@n8n.example.com:8443/webhook/abc?token=t"),
        "n8n.example.com:8443"
    );
    assert_eq!(web::origin("http://127.0.0.1:9/hook"), "127.0.0.1:9");
}

/// A Rust handler selects events as a JSON rule does: names, then a content filter.
#[tokio::test]
async fn a_rust_handler_takes_a_content_filter_as_rules_do() {
    use twenty_webhook::worker::Filter;
    use twenty_webhook::worker::router::Selection;
    let filter = Filter::parse(r#"{"updatedFields": ["emails"], "record": {"emails": {"primaryEmail": [{"suffix": "@b.c"}]}}}"#).unwrap();
    let other = Filter::parse(r#"{"updatedFields": ["name"]}"#).unwrap();
    let router = Router::new()
        .on(
            "emails",
            Selection::events(&["person.updated"]).filter(filter),
            |_| async { Ok(()) },
        )
        .unwrap()
        .on(
            "names",
            Selection::events(&["person.*"]).filter(other),
            |_| async { Ok(()) },
        )
        .unwrap()
        .on("all", &["*"], |_| async { Ok(()) })
        .unwrap();
    let handled = |outcome| match outcome {
        Outcome::Done { handled, .. } => handled,
        other => panic!("{other:?}"),
    };
    let e1 = router.dispatch(event("e1", "person.updated"), Arc::new(NoLedger));
    assert_eq!(handled(e1.await), 2, "emails and all, not names");
    let e2 = router.dispatch(event("e2", "company.updated"), Arc::new(NoLedger));
    assert_eq!(handled(e2.await), 1, "all only");
}

/// Panics on `boom`, hangs on `hang`, takes anything else.
struct Wayward;

impl Process for Wayward {
    async fn process(
        &self,
        item: &Item,
        _bounds: Bounds,
        _tally: &Tally,
    ) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        match item.message_id.as_str() {
            "boom" => panic!("scripted panic in a handler"),
            "hang" => std::future::pending().await,
            _ => Ok(()),
        }
    }
}

/// A panic stays with its message, whether it ran alone (on the batch's own task) or
/// beside others (each on a task of its own); so does a hang at the batch's deadline.
#[tokio::test(start_paused = true)]
async fn a_panic_or_a_hang_fails_its_message_alone_or_in_company() {
    let ids = |failed: Vec<batch::ItemFailure>| -> Vec<String> {
        failed.into_iter().map(|f| f.message_id).collect()
    };
    let run = |items: Vec<Item>, fifo: bool, bounds: Bounds| {
        batch::run(Arc::new(Wayward), items, fifo, 4, bounds, Arc::default())
    };
    let alone = run(vec![item("boom", None)], false, NO_BOUNDS).await;
    assert_eq!(ids(alone), ["boom"]);
    let many = vec![item("a", None), item("boom", None), item("b", None)];
    assert_eq!(ids(run(many, false, NO_BOUNDS).await), ["boom"]);
    let group = vec![item("boom", Some("g")), item("c", Some("g"))];
    assert_eq!(
        ids(run(group, true, NO_BOUNDS).await),
        ["boom", "c"],
        "a lone FIFO group: the rest is not handled"
    );

    let bounds = Bounds {
        start_by: None,
        stop_at: Some(tokio::time::Instant::now() + Duration::from_secs(1)),
    };
    let hung = run(vec![item("hang", None)], false, bounds).await;
    assert_eq!(hung.len(), 1);
    assert!(
        hung[0].failure.reason.contains("ran out of time"),
        "{hung:?}"
    );
}

/// A handler's panic is its own failure, whether it is the event's only handler (run on
/// the message's task) or one of several (each on a task of its own).
#[tokio::test]
async fn a_handler_that_panics_fails_alone() {
    fn panicking(router: Router, name: &str) -> Router {
        router
            .on(name, &["person.*"], |_| async {
                if true {
                    panic!("scripted panic in a handler");
                }
                Ok(())
            })
            .unwrap()
    }
    let failed_handlers = |outcome: Outcome| match outcome {
        Outcome::Failed(failures) => failures
            .into_iter()
            .map(|f| (f.handler.unwrap_or_default(), f.reason))
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let alone = panicking(Router::new(), "boom");
    let outcome = alone
        .dispatch(event("e1", "person.updated"), Arc::new(NoLedger))
        .await;
    assert_eq!(
        failed_handlers(outcome),
        [("boom".to_owned(), "the handler panicked".to_owned())]
    );
    let (router, runs) = counting_router(&[("crm", "person.*")], &[]);
    let beside = panicking(router, "boom");
    let outcome = beside
        .dispatch(event("e2", "person.updated"), Arc::new(NoLedger))
        .await;
    assert_eq!(
        failed_handlers(outcome),
        [("boom".to_owned(), "the handler panicked".to_owned())]
    );
    assert_eq!(runs.lock().unwrap()["crm"], 1, "the other handler ran");
}
