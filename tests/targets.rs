//! Targets besides HTTP, against moto's server: Step Functions (one execution per event,
//! however often it comes), EventBridge (a bus whose rule forwards to an SQS queue; calls
//! gathered across a batch; a refused entry fails only its message) and SQS (FIFO ids
//! kept); content filters choosing what reaches them.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::counting_proxy::CountingProxy;
use support::*;
use twenty_webhook::aws::{LazySdk, target_clients};
use twenty_webhook::envelope::{Destination as Target, Message};
use twenty_webhook::worker::Forwarder;
use twenty_webhook::worker::NoLedger;
use twenty_webhook::worker::Worker;
use twenty_webhook::worker::rules::parse_rules;
use twenty_webhook::worker::targets::state_machine::execution_name;

/// An opportunity update as Twenty sends it, queued as the ingest function queues it.
fn opportunity(id: &str, stage: &str) -> Message {
    let body = json!({
        "targetUrl": "https://example.com/hook", "eventName": "opportunity.updated",
        "objectMetadata": {"id": "om-1", "nameSingular": "opportunity"},
        "workspaceId": "ws-1", "webhookId": "wh-1", "eventDate": "2026-11-29T10:00:00.000Z",
        "updatedFields": ["stage"],
        "record": {"id": id, "name": "Deal", "stage": stage, "amount": {"amountMicros": 5000000000u64, "currencyCode": "EUR"},
                   "createdAt": "2026-11-01T00:00:00.000Z", "updatedAt": "2026-11-29T10:00:00.000Z", "deletedAt": null}
    });
    ingest_messages(&body.to_string(), Target::default()).remove(0)
}

async fn worker(rules: &str, endpoint: &str) -> Worker {
    let sdk = sdk_config(endpoint).await;
    let router = Forwarder::default()
        .with_clients(target_clients(&LazySdk::ready(sdk), Default::default()))
        .router(parse_rules(rules).expect("valid rules"))
        .expect("a router");
    Worker::builder(router, None, Arc::new(NoLedger), 10).build()
}

async fn state_machine() -> (aws_sdk_sfn::Client, String) {
    let sfn = aws_sdk_sfn::Client::new(&sdk_config(moto_endpoint()).await);
    let name = format!("won-{}-{}", std::process::id(), now_ms());
    let arn = sfn
        .create_state_machine()
        .name(name)
        .role_arn("arn:aws:iam::123456789012:role/states")
        .definition(r#"{"StartAt":"Done","States":{"Done":{"Type":"Pass","End":true}}}"#)
        .send()
        .await
        .expect("create a state machine")
        .state_machine_arn;
    (sfn, arn)
}

/// The worked example: a Step Functions workflow on `opportunity.updated` when the stage
/// becomes WON. A LOST update starts nothing; a WON one starts one execution, with the
/// envelope as its input, however often the message comes.
/// Each execution of the state machine `arn`: its name and its input.
async fn executions(sfn: &aws_sdk_sfn::Client, arn: &str) -> Vec<(String, String)> {
    let listed = sfn
        .list_executions()
        .state_machine_arn(arn)
        .send()
        .await
        .unwrap()
        .executions;
    let mut out = Vec::new();
    for execution in listed {
        let input = sfn
            .describe_execution()
            .execution_arn(&execution.execution_arn)
            .send()
            .await
            .unwrap()
            .input
            .unwrap_or_default();
        out.push((execution.name, input));
    }
    out
}

#[tokio::test]
async fn a_won_deal_starts_one_execution_however_often_it_comes() {
    let (sfn, arn) = state_machine().await;
    let rules = json!([{
        "name": "won-deals", "events": ["opportunity.updated"],
        "filter": {"record": {"stage": ["WON"]}, "updatedFields": ["stage"]},
        "stateMachineArn": arn
    }])
    .to_string();
    let w = worker(&rules, moto_endpoint()).await;
    let (won, lost) = (opportunity("o1", "WON"), opportunity("o2", "LOST"));
    let batch = sqs_event(&[("m1", &won.body, None), ("m2", &lost.body, None)], false);
    assert!(failed(&w.handle(batch).await.unwrap()).is_empty());
    // The same message again (a retry, a redelivery): no second run.
    let again = sqs_event(&[("m1", &won.body, None)], false);
    assert!(failed(&w.handle(again).await.unwrap()).is_empty());

    let executions = executions(&sfn, &arn).await;
    assert_eq!(executions.len(), 1, "{executions:?}");
    let (name, input) = &executions[0];
    assert_eq!(*name, execution_name(&won.id, "won-deals"));
    assert_eq!(*input, won.body, "the envelope is the input, byte for byte");
}

/// A state machine the worker may not start, or that does not exist: final, not retried.
#[tokio::test]
async fn a_missing_state_machine_is_a_permanent_failure() {
    let rules = json!([{
        "name": "gone", "events": ["*"],
        "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:no-such-machine"
    }])
    .to_string();
    let w = worker(&rules, moto_endpoint()).await;
    let m = opportunity("o3", "WON");
    let response = w
        .handle(sqs_event(&[("m3", &m.body, None)], false))
        .await
        .unwrap();
    // Without a dead-letter queue the message is reported failed; the reason says final.
    assert_eq!(failed(&response), ["m3"]);
}

async fn bus_to_queue() -> (String, String) {
    let sdk = sdk_config(moto_endpoint()).await;
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let bus = format!("twenty-{}-{}", std::process::id(), now_ms());
    events.create_event_bus().name(&bus).send().await.unwrap();
    events
        .put_rule()
        .name("all-twenty")
        .event_bus_name(&bus)
        .event_pattern(r#"{"source":["twenty"]}"#)
        .send()
        .await
        .unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("queue")
        .arn(queue_arn)
        .build()
        .unwrap();
    events
        .put_targets()
        .rule("all-twenty")
        .event_bus_name(&bus)
        .targets(target)
        .send()
        .await
        .unwrap();
    (bus, queue)
}

/// Twelve messages of one batch reach the bus in two calls (10 + 2), each an event with
/// `source` twenty, `detail-type` the event's name and the envelope as `detail`.
#[tokio::test]
async fn a_batch_goes_to_the_bus_in_calls_of_ten() {
    let (bus, queue) = bus_to_queue().await;
    let proxy = CountingProxy::start(moto_endpoint()).await;
    let rules =
        json!([{"name": "bus", "events": ["opportunity.*"], "eventBusName": bus}]).to_string();
    let w = worker(&rules, &proxy.url).await;
    let messages: Vec<Message> = (0..12)
        .map(|i| opportunity(&format!("o{i}"), "NEW"))
        .collect();
    let ids: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
    let records: Vec<(&str, &str, Option<&str>)> = ids
        .iter()
        .zip(&messages)
        .map(|(id, m)| (id.as_str(), m.body.as_str(), None))
        .collect();
    assert!(failed(&w.handle(sqs_event(&records, false)).await.unwrap()).is_empty());
    assert_eq!(proxy.count("PutEvents", ""), 2, "12 entries, two calls");

    let sqs = sqs().await;
    let got = drain(&sqs, &queue, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 12);
    let event: Value = serde_json::from_str(got[0].body().unwrap()).unwrap();
    assert_eq!(event["source"], "twenty");
    assert_eq!(event["detail-type"], "opportunity.updated");
    let detail = &event["detail"];
    assert!(
        messages
            .iter()
            .any(|m| serde_json::from_str::<Value>(&m.body).unwrap() == *detail),
        "the envelope is the detail"
    );
}

/// Marks the `PutEvents` entries whose detail names `o-refused` as throttled, as
/// EventBridge answers when one entry of a call is refused.
fn refuse_one(target: &str, request: &[u8], answer: Vec<u8>) -> Vec<u8> {
    if !target.ends_with("PutEvents") {
        return answer;
    }
    let request: Value = serde_json::from_slice(request).unwrap_or_default();
    let mut answer: Value = match serde_json::from_slice(&answer) {
        Ok(v) => v,
        Err(_) => return answer,
    };
    let mut failed = 0;
    for (i, entry) in request["Entries"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if entry["Detail"]
            .as_str()
            .is_some_and(|d| d.contains("o-refused"))
        {
            answer["Entries"][i] =
                json!({"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"});
            failed += 1;
        }
    }
    answer["FailedEntryCount"] = json!(failed);
    serde_json::to_vec(&answer).unwrap_or_default()
}

#[tokio::test]
async fn an_entry_the_bus_refuses_fails_only_its_message() {
    let (bus, _queue) = bus_to_queue().await;
    let proxy = CountingProxy::rewriting(moto_endpoint(), refuse_one).await;
    let rules =
        json!([{"name": "bus", "events": ["*"], "eventBusName": bus, "source": "crm.twenty"}])
            .to_string();
    let w = worker(&rules, &proxy.url).await;
    let (a, b, c) = (
        opportunity("o-a", "NEW"),
        opportunity("o-refused", "NEW"),
        opportunity("o-c", "NEW"),
    );
    let batch = sqs_event(
        &[
            ("ma", &a.body, None),
            ("mb", &b.body, None),
            ("mc", &c.body, None),
        ],
        false,
    );
    assert_eq!(failed(&w.handle(batch).await.unwrap()), ["mb"]);
    assert_eq!(proxy.count("PutEvents", ""), 1, "one call for the three");
}

/// From a FIFO queue to a FIFO target: the body, the message attributes and the group as
/// they came, and the envelope's id as deduplication id, whatever the received message's
/// (a dead-letter copy or a redrive carries one of its own): one event, one id.
#[tokio::test]
async fn a_fifo_target_keeps_the_group_and_the_envelope_id() {
    let sqs = sqs().await;
    let target = new_queue(&sqs, true).await;
    let rules = json!([{"name": "copy", "events": ["*"], "queueUrl": target}]).to_string();
    let w = worker(&rules, moto_endpoint()).await;
    let m = opportunity("o9", "WON");
    let batch = sqs_event(&[("m9", &m.body, Some("opportunity:o9"))], true);
    assert!(failed(&w.handle(batch).await.unwrap()).is_empty());
    let got = drain(&sqs, &target, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body(), Some(m.body.as_str()));
    assert_eq!(attribute(&got[0], "eventName"), Some("person.created"));
    let system = got[0].attributes().unwrap();
    use aws_sdk_sqs::types::MessageSystemAttributeName as A;
    assert_eq!(system[&A::MessageGroupId], "opportunity:o9");
    assert_eq!(system[&A::MessageDeduplicationId], m.id);
}

/// A rule with a bad filter refuses to build, naming the rule and the problem; a target
/// kind the worker has no client for too.
#[test]
fn bad_filters_and_targets_are_refused_by_name() {
    let e = parse_rules(r#"[{"name":"won","events":["*"],"filter":{"record":{"stage":"WON"}},"url":"https://x.example"}]"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rule 1 (won)") && e.contains("record.stage"),
        "{e}"
    );
    for (rule, says) in [
        (
            r#"{"events":["*"],"url":"https://x.example","queueUrl":"https://sqs.us-east-1.amazonaws.com/1/q"}"#,
            "exactly one of",
        ),
        (r#"{"events":["*"]}"#, "exactly one of"),
        (
            r#"{"events":["*"],"stateMachineArn":"arn:aws:states:us-east-1:1:stateMachine:x"}"#,
            "stateMachineArn",
        ),
        (
            r#"{"events":["*"],"eventBusName":"bus","secret":"whsec_c2VjcmV0c2VjcmV0"}"#,
            "`secret` goes with `url` only",
        ),
        (
            r#"{"events":["*"],"eventBusName":"bus","source":"aws.events"}"#,
            "`source`",
        ),
        (
            r#"{"events":["*"],"url":"https://x.example","source":"x"}"#,
            "`source` goes with `eventBusName` only",
        ),
        (r#"{"events":["*"],"queueUrl":"sqs://q"}"#, "queueUrl"),
    ] {
        let e = parse_rules(&format!("[{rule}]")).unwrap_err().to_string();
        assert!(e.contains(says), "{rule}: {e}");
        assert!(!e.contains("c2VjcmV0"), "never a value: {e}");
    }
    let rules = parse_rules(r#"[{"name":"sfn","events":["*"],"stateMachineArn":"arn:aws:states:us-east-1:123456789012:stateMachine:x"}]"#).unwrap();
    let e = Forwarder::default()
        .router(rules)
        .err()
        .expect("no client")
        .to_string();
    assert!(e.contains("sfn") && e.contains("Step Functions"), "{e}");
}

/// One rule transform per kind of target: the queue gets a flat JSON body, the bus a flat
/// detail, the state machine a flat input; each from the same envelope.
#[tokio::test]
async fn a_transform_reaches_each_kind_of_target() {
    let (sfn, arn) = state_machine().await;
    let (bus, bus_queue) = bus_to_queue().await;
    let sqs = sqs().await;
    let queue = new_queue(&sqs, false).await;
    let transform = json!({
        "inputPathsMap": {"deal": "$.record.name", "stage": "$.record.stage",
                          "micros": "$.record.amount.amountMicros"},
        "inputTemplate": "{\"deal\": <deal>, \"stage\": \"<stage>\", \"micros\": <micros>, \"rule\": \"<aws.events.rule-name>\"}"
    });
    let rules = json!([
        {"name": "to-sfn", "events": ["*"], "stateMachineArn": arn, "transform": transform},
        {"name": "to-bus", "events": ["*"], "eventBusName": bus, "transform": transform},
        {"name": "to-queue", "events": ["*"], "queueUrl": queue, "transform": transform}
    ])
    .to_string();
    let w = worker(&rules, moto_endpoint()).await;
    let m = opportunity("o-t", "WON");
    let batch = sqs_event(&[("mt", &m.body, None)], false);
    assert!(failed(&w.handle(batch).await.unwrap()).is_empty());
    let want =
        |rule: &str| json!({"deal": "Deal", "stage": "WON", "micros": 5000000000u64, "rule": rule});

    let got = drain(&sqs, &queue, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 1);
    let body: Value = serde_json::from_str(got[0].body().unwrap()).unwrap();
    assert_eq!(body, want("to-queue"));

    let got = drain(&sqs, &bus_queue, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 1);
    let event: Value = serde_json::from_str(got[0].body().unwrap()).unwrap();
    assert_eq!(event["detail"], want("to-bus"));

    let executions = executions(&sfn, &arn).await;
    assert_eq!(executions.len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&executions[0].1).unwrap(),
        want("to-sfn")
    );
}
