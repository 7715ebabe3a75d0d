//! Rule transforms, table-driven from the examples of EventBridge's input transformer
//! documentation, adapted to a Twenty envelope: quoted and unquoted placeholders, nested
//! paths, arrays and wildcards, missing paths, the reserved variables; and the templates
//! refused when a rule is read.

use serde_json::{Value, json};
use twenty_webhook::worker::transform::Transform;

fn envelope() -> Value {
    json!({
        "version": 1,
        "id": "evt-1",
        "eventName": "opportunity.updated",
        "objectName": "opportunity",
        "action": "updated",
        "recordId": "r-1",
        "record": {
            "id": "r-1",
            "name": "Acme \"big\" deal",
            "stage": "WON",
            "amount": {"amountMicros": 1500000000, "currencyCode": "EUR"},
            "emails": {"primaryEmail": "ada@example.com", "additionalEmails": ["a@x.io", "b@x.io"]},
            "tags": [{"name": "vip"}, {"name": "eu"}]
        },
        "updatedFields": ["stage"]
    })
}

fn transform(paths: Value, template: &str) -> Result<Transform, String> {
    Transform::parse(&json!({"inputPathsMap": paths, "inputTemplate": template}))
}

#[test]
fn templates_give_what_eventbridge_gives() {
    let paths = json!({
        "name": "$.record.name",
        "stage": "$.record.stage",
        "amount": "$.record.amount",
        "micros": "$.record.amount.amountMicros",
        "email": "$.record.emails.primaryEmail",
        "second": "$.record.emails.additionalEmails[1]",
        "tags": "$.record.tags[*].name",
        "fields": "$.updatedFields",
        "missing": "$.record.companyId",
        "bracket": "$['record']['stage']"
    });
    let rows: &[(&str, &str, &str)] = &[
        // A JSON string template: placeholders are string content.
        (
            "text in a JSON string",
            r#""deal <name> is <stage>""#,
            r#""deal Acme \"big\" deal is WON""#,
        ),
        // Unquoted placeholders: JSON values (a string keeps its quotes).
        (
            "unquoted values",
            r#"{"stage": <stage>, "micros": <micros>, "amount": <amount>}"#,
            r#"{"stage": "WON", "micros": 1500000000, "amount": {"amountMicros":1500000000,"currencyCode":"EUR"}}"#,
        ),
        // Quoted placeholders: the same text inside the quotes.
        (
            "quoted values",
            r#"{"stage": "<stage>", "micros": "<micros>"}"#,
            r#"{"stage": "WON", "micros": "1500000000"}"#,
        ),
        // Values inside arrays of the template.
        (
            "in an array",
            r#"{"stage": [9, <stage>, true]}"#,
            r#"{"stage": [9, "WON", true]}"#,
        ),
        // Text around a quoted placeholder, with escaped quotes in the template.
        (
            "escaped quotes around a placeholder",
            r#"{"status": "deal \"<stage>\" for <email>"}"#,
            r#"{"status": "deal \"WON\" for ada@example.com"}"#,
        ),
        (
            "an array index",
            r#"{"second": <second>}"#,
            r#"{"second": "b@x.io"}"#,
        ),
        (
            "a wildcard gathers",
            r#"{"tags": <tags>}"#,
            r#"{"tags": ["vip","eu"]}"#,
        ),
        (
            "an array value",
            r#"{"fields": <fields>}"#,
            r#"{"fields": ["stage"]}"#,
        ),
        ("bracket notation", r#"{"s": <bracket>}"#, r#"{"s": "WON"}"#),
        // A path that matches nothing: null unquoted, empty quoted.
        (
            "missing paths",
            r#"{"a": <missing>, "b": "<missing>"}"#,
            r#"{"a": null, "b": ""}"#,
        ),
        // Reserved variables: the whole envelope, its record, the rule's name.
        (
            "the record",
            r#"{"r": <twenty.record>}"#,
            &format!(r#"{{"r": {}}}"#, envelope()["record"]),
        ),
        (
            "the envelope",
            r#"<aws.events.event.json>"#,
            &envelope().to_string(),
        ),
        (
            "the rule's name",
            r#"{"rule": "<aws.events.rule-name>"}"#,
            r#"{"rule": "won"}"#,
        ),
        // Not JSON at all: plain text, placeholders inserted as JSON values.
        (
            "plain text",
            "Deal <name> is <stage>",
            r#"Deal "Acme \"big\" deal" is "WON""#,
        ),
        // A `<` that opens no name is text.
        (
            "a lone angle bracket",
            r#"{"cmp": "1 < 2 <stage>"}"#,
            r#"{"cmp": "1 < 2 WON"}"#,
        ),
    ];
    for (what, template, want) in rows {
        let t = transform(paths.clone(), template).unwrap_or_else(|e| panic!("{what}: {e}"));
        let body = t.apply(&envelope(), "won");
        assert_eq!(body.text, *want, "{what}");
        if body.json {
            serde_json::from_str::<Value>(&body.text)
                .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
            assert_eq!(body.content_type(), "application/json", "{what}");
        } else {
            assert_eq!(body.content_type(), "text/plain; charset=utf-8", "{what}");
        }
    }
}

#[test]
fn transforms_that_cannot_work_are_refused_when_read() {
    let ok = json!({"stage": "$.record.stage"});
    let rows: &[(Value, &str)] = &[
        (
            json!({"inputPathsMap": ok, "inputTemplate": "{\"s\": <stage>"}),
            "does not give valid JSON",
        ),
        (
            json!({"inputPathsMap": ok, "inputTemplate": "{\"s\": <other>}"}),
            "does not define",
        ),
        (
            json!({"inputPathsMap": {"s": "record.stage"}, "inputTemplate": "<s>"}),
            "starts with `$`",
        ),
        (
            json!({"inputPathsMap": {"s": "$.a[x]"}, "inputTemplate": "<s>"}),
            "not an index",
        ),
        (
            json!({"inputPathsMap": {"aws.events.rule-arn": "$.a"}, "inputTemplate": "x"}),
            "reserved",
        ),
        (
            json!({"inputPathsMap": {"a b": "$.a"}, "inputTemplate": "x"}),
            "is not a name",
        ),
        (
            json!({"inputPathsMap": {"s": 3}, "inputTemplate": "<s>"}),
            "JSON path string",
        ),
        (
            json!({"inputPathsMap": ok}),
            "`transform.inputTemplate` must be a string",
        ),
        (
            json!({"inputTemplate": "x", "template": "y"}),
            "unknown field `template`",
        ),
        (json!("x"), "must be an object"),
    ];
    for (value, want) in rows {
        let e = Transform::parse(value).expect_err(want);
        assert!(e.contains(want), "{value}: {e}");
    }
    let many: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("n{i}"), json!("$.a"))).collect();
    let e = transform(Value::Object(many), "x").unwrap_err();
    assert!(e.contains("more than 100"), "{e}");
}
