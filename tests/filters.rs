//! Content filters, table-driven: each case names the EventBridge event-pattern rule it
//! shows (docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html and
//! eb-create-pattern-operators.html), with envelopes that must and must not match.

use serde_json::{Value, json};
use twenty_webhook::worker::filter::Filter;

fn envelope(record: Value, updated: Value) -> Value {
    json!({
        "version": 1, "id": "e1", "eventName": "opportunity.updated",
        "objectName": "opportunity", "action": "updated", "recordId": "o1",
        "workspaceId": "ws-1", "updatedFields": updated, "record": record
    })
}

fn opportunity() -> Value {
    envelope(
        json!({"id": "o1", "name": "Acme deal", "stage": "WON", "amount": {"amountMicros": 5000000000u64, "currencyCode": "EUR"},
               "probability": 80, "closeDate": null, "tags": ["big", "q4"], "labels": [], "pointOfContactId": "p1",
               "contacts": [{"role": "buyer", "email": "a@acme.io"}, {"role": "user", "email": "b@acme.io"}]}),
        json!(["stage", "probability"]),
    )
}

#[test]
fn every_operator_matches_as_eventbridge_does() {
    let e = opportunity();
    // (the EventBridge rule shown, the pattern, matches the opportunity)
    let cases: &[(&str, Value, bool)] = &[
        ("exact string", json!({"record": {"stage": ["WON"]}}), true),
        (
            "exact string, another value",
            json!({"record": {"stage": ["LOST"]}}),
            false,
        ),
        (
            "any of the allowed values",
            json!({"record": {"stage": ["LOST", "WON"]}}),
            true,
        ),
        (
            "exact numbers",
            json!({"record": {"probability": [80]}}),
            true,
        ),
        (
            "numbers are compared as numbers",
            json!({"record": {"probability": [80.0]}}),
            true,
        ),
        (
            "no type conversion: a number is not its string",
            json!({"record": {"probability": ["80"]}}),
            false,
        ),
        (
            "no type conversion: a string is not a number",
            json!({"recordId": [1]}),
            false,
        ),
        (
            "null matches null",
            json!({"record": {"closeDate": [null]}}),
            true,
        ),
        (
            "null is not a missing field",
            json!({"record": {"nothere": [null]}}),
            false,
        ),
        (
            "nested objects",
            json!({"record": {"amount": {"currencyCode": ["EUR"]}}}),
            true,
        ),
        (
            "an array field matches if any element does",
            json!({"updatedFields": ["stage"]}),
            true,
        ),
        (
            "an array field: no element matches",
            json!({"updatedFields": ["name"]}),
            false,
        ),
        (
            "arrays of objects: any object",
            json!({"record": {"contacts": {"role": ["buyer"]}}}),
            true,
        ),
        (
            "arrays of objects: one object must hold every condition",
            json!({"record": {"contacts": {"role": ["user"], "email": ["b@acme.io"]}}}),
            true,
        ),
        (
            "prefix",
            json!({"record": {"name": [{"prefix": "Acme"}]}}),
            true,
        ),
        (
            "prefix is case-sensitive",
            json!({"record": {"name": [{"prefix": "acme"}]}}),
            false,
        ),
        (
            "prefix with equals-ignore-case",
            json!({"record": {"name": [{"prefix": {"equals-ignore-case": "ACME"}}]}}),
            true,
        ),
        (
            "suffix",
            json!({"record": {"name": [{"suffix": "deal"}]}}),
            true,
        ),
        (
            "suffix with equals-ignore-case",
            json!({"record": {"name": [{"suffix": {"equals-ignore-case": "DEAL"}}]}}),
            true,
        ),
        (
            "suffix, not",
            json!({"record": {"name": [{"suffix": "Acme"}]}}),
            false,
        ),
        (
            "equals-ignore-case",
            json!({"record": {"stage": [{"equals-ignore-case": "won"}]}}),
            true,
        ),
        (
            "wildcard",
            json!({"record": {"name": [{"wildcard": "Ac*al"}]}}),
            true,
        ),
        (
            "wildcard, several stars",
            json!({"record": {"name": [{"wildcard": "*me*de*"}]}}),
            true,
        ),
        (
            "wildcard, no match",
            json!({"record": {"name": [{"wildcard": "*bank*"}]}}),
            false,
        ),
        (
            "anything-but a value",
            json!({"record": {"stage": [{"anything-but": "LOST"}]}}),
            true,
        ),
        (
            "anything-but the value it is",
            json!({"record": {"stage": [{"anything-but": "WON"}]}}),
            false,
        ),
        (
            "anything-but a list",
            json!({"record": {"stage": [{"anything-but": ["LOST", "WON"]}]}}),
            false,
        ),
        (
            "anything-but numbers",
            json!({"record": {"probability": [{"anything-but": [0, 100]}]}}),
            true,
        ),
        (
            "anything-but prefix",
            json!({"record": {"name": [{"anything-but": {"prefix": "Acme"}}]}}),
            false,
        ),
        (
            "anything-but suffix",
            json!({"record": {"name": [{"anything-but": {"suffix": "loan"}}]}}),
            true,
        ),
        (
            "anything-but equals-ignore-case",
            json!({"record": {"stage": [{"anything-but": {"equals-ignore-case": ["won", "lost"]}}]}}),
            false,
        ),
        (
            "anything-but wildcard",
            json!({"record": {"name": [{"anything-but": {"wildcard": "*deal"}}]}}),
            false,
        ),
        (
            "anything-but needs the field present",
            json!({"record": {"nothere": [{"anything-but": "x"}]}}),
            false,
        ),
        (
            "numeric range",
            json!({"record": {"probability": [{"numeric": [">", 50, "<=", 80]}]}}),
            true,
        ),
        (
            "numeric, outside",
            json!({"record": {"probability": [{"numeric": [">", 80]}]}}),
            false,
        ),
        (
            "numeric equal",
            json!({"record": {"amount": {"amountMicros": [{"numeric": ["=", 5000000000u64]}]}}}),
            true,
        ),
        (
            "numeric matches numbers only",
            json!({"recordId": [{"numeric": [">", 0]}]}),
            false,
        ),
        (
            "exists true",
            json!({"record": {"pointOfContactId": [{"exists": true}]}}),
            true,
        ),
        (
            "exists true, null is present",
            json!({"record": {"closeDate": [{"exists": true}]}}),
            true,
        ),
        (
            "exists false on a missing field",
            json!({"record": {"deletedAt": [{"exists": false}]}}),
            true,
        ),
        (
            "exists false on a present field",
            json!({"record": {"stage": [{"exists": false}]}}),
            false,
        ),
        (
            "exists false below a missing object",
            json!({"record": {"company": {"id": [{"exists": false}]}}}),
            true,
        ),
        // event-ruler: `exists` works on leaf nodes only; an object (a composite field) or
        // an empty array has no leaf at its path, so it counts as absent.
        (
            "exists true on an object-valued field: not a leaf",
            json!({"record": {"amount": [{"exists": true}]}}),
            false,
        ),
        (
            "exists false on an object-valued field",
            json!({"record": {"amount": [{"exists": false}]}}),
            true,
        ),
        (
            "exists true on an array of objects: no leaf at its path",
            json!({"record": {"contacts": [{"exists": true}]}}),
            false,
        ),
        (
            "exists true on an array of strings",
            json!({"record": {"tags": [{"exists": true}]}}),
            true,
        ),
        (
            "exists true on an empty array",
            json!({"record": {"labels": [{"exists": true}]}}),
            false,
        ),
        (
            "exists false on an empty array",
            json!({"record": {"labels": [{"exists": false}]}}),
            true,
        ),
        (
            "exists true on a leaf inside an object",
            json!({"record": {"amount": {"currencyCode": [{"exists": true}]}}}),
            true,
        ),
        (
            "a missing field matches nothing else",
            json!({"record": {"deletedAt": ["x", {"prefix": ""}]}}),
            false,
        ),
        (
            "every field must match",
            json!({"objectName": ["opportunity"], "record": {"stage": ["LOST"]}}),
            false,
        ),
        (
            "$or: one alternative",
            json!({"$or": [{"record": {"stage": ["LOST"]}}, {"record": {"probability": [{"numeric": [">=", 80]}]}}]}),
            true,
        ),
        (
            "$or: none",
            json!({"$or": [{"record": {"stage": ["LOST"]}}, {"objectName": ["person"]}]}),
            false,
        ),
        (
            "$or with the other fields",
            json!({"workspaceId": ["ws-2"], "$or": [{"record": {"stage": ["WON"]}}, {"objectName": ["person"]}]}),
            false,
        ),
        (
            "$or nested in an object",
            json!({"record": {"$or": [{"stage": ["LOST"]}, {"tags": ["q4"]}]}}),
            true,
        ),
        (
            "the stage becomes WON (the worked example)",
            json!({"record": {"stage": ["WON"]}, "updatedFields": ["stage"]}),
            true,
        ),
    ];
    for (rule, pattern, want) in cases {
        let filter = Filter::from_value(pattern).unwrap_or_else(|e| panic!("{rule}: {e}"));
        assert_eq!(filter.matches(&e), *want, "{rule}: {pattern}");
    }
}

#[test]
fn a_reconciled_event_meets_conditions_on_the_updated_fields_it_cannot_know() {
    let won = json!({"record": {"stage": ["WON"]}, "updatedFields": ["stage"]});
    let filter = Filter::from_value(&won).unwrap();
    let mut reconciled = envelope(json!({"id": "o1", "stage": "WON"}), Value::Null);
    reconciled["origin"] = json!("reconciliation");
    reconciled["version"] = json!(2);
    assert!(
        filter.matches(&reconciled),
        "unknown updatedFields: acted on"
    );
    reconciled["record"]["stage"] = json!("LOST");
    assert!(
        !filter.matches(&reconciled),
        "the record's own conditions still hold"
    );
    // A delivered event without updatedFields (a creation) does not pass for one.
    let created = envelope(json!({"id": "o1", "stage": "WON"}), Value::Null);
    assert!(!filter.matches(&created));
    // Delivered events only: origin absent.
    let delivered_only =
        Filter::from_value(&json!({"updatedFields": ["stage"], "origin": [{"exists": false}]}))
            .unwrap();
    let mut reconciled = envelope(json!({"id": "o1", "stage": "WON"}), Value::Null);
    reconciled["origin"] = json!("reconciliation");
    assert!(!delivered_only.matches(&reconciled));
}

#[test]
fn bad_patterns_are_refused_with_the_path_and_the_problem() {
    let cases: &[(&str, &str, &str)] = &[
        ("[]", "", "must be a JSON object"),
        ("{}", "", "at least one field"),
        ("not json", "", "not JSON"),
        (
            r#"{"record": {"stage": "WON"}}"#,
            "record.stage",
            "non-empty array",
        ),
        (
            r#"{"record": {"stage": []}}"#,
            "record.stage",
            "non-empty array",
        ),
        (
            r#"{"stage": [{"prefix": 1}]}"#,
            "stage",
            "`prefix` takes a string",
        ),
        (
            r#"{"stage": [{"regex": "x"}]}"#,
            "stage",
            "unknown operator `regex`",
        ),
        (
            r#"{"stage": [{"prefix": "a", "suffix": "b"}]}"#,
            "stage",
            "exactly one key",
        ),
        (r#"{"n": [{"numeric": [">"]}]}"#, "n", "`numeric`"),
        (r#"{"n": [{"numeric": ["~", 1]}]}"#, "n", "`numeric`"),
        (r#"{"n": [{"numeric": [">", "1"]}]}"#, "n", "`numeric`"),
        (
            r#"{"n": [{"exists": "yes"}]}"#,
            "n",
            "`exists` takes true or false",
        ),
        (r#"{"n": [{"wildcard": "a**b"}]}"#, "n", "two `*` in a row"),
        (
            r#"{"n": [{"anything-but": {"regex": "x"}}]}"#,
            "n",
            "`anything-but`",
        ),
        (
            r#"{"n": [{"anything-but": [true]}]}"#,
            "n",
            "`anything-but`",
        ),
        (r#"{"$or": [{"a": ["x"]}]}"#, "$or", "at least two"),
        (r#"{"n": [[1]]}"#, "n", "an allowed value"),
    ];
    for (text, path, says) in cases {
        let e = Filter::parse(text).expect_err(text);
        assert_eq!(e.path, *path, "{text}: {e}");
        assert!(e.to_string().contains(says), "{text}: {e}");
    }
    let long = format!(r#"{{"a": [{}]}}"#, vec!["\"xxxxxxxxxx\""; 400].join(","));
    assert!(
        Filter::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("longer than")
    );
}
