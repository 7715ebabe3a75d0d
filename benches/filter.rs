//! A content filter of five conditions on a 2 KiB opportunity envelope: matching alone (on
//! the JSON a worker parses once per event, whatever the number of rules), and the parse
//! plus the match (what the first filtered rule of an event costs). Target: ≤ 2 µs for the
//! match (issue 19).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use twenty_webhook::worker::Filter;

/// An opportunity.updated envelope of about 2 KiB, as the worker reads it.
fn envelope() -> String {
    let mut notes = Vec::new();
    let mut e = json!({
        "version": 1, "id": "3f2a9c1e0b7d4e6f8a0b1c2d3e4f5a6b-0", "shape": "single",
        "eventName": "opportunity.updated", "objectName": "opportunity", "action": "updated",
        "recordId": "d0a4c7e2-3b5f-4a61-8c9d-0e1f2a3b4c5d",
        "workspaceId": "20202020-1c25-4d02-bf25-6aeccf7ea419", "webhookId": "8c2b6a4e-77a4-4b5e-9f0e-5a1d2c3b4e01",
        "eventDate": "2026-11-29T10:00:00.000Z", "receivedAt": "2026-11-29T10:00:00.120Z", "signatureVerified": true,
        "objectMetadata": {"id": "5f7e0c4e-1c56-4a4b-9a0e-2f6a4cb1a001", "nameSingular": "opportunity"},
        "updatedFields": ["stage", "probability"],
        "record": {
            "id": "d0a4c7e2-3b5f-4a61-8c9d-0e1f2a3b4c5d", "name": "Acme renewal 2027",
            "amount": {"amountMicros": 125000000000u64, "currencyCode": "EUR"},
            "closeDate": "2026-12-31T00:00:00.000Z", "stage": "WON", "probability": 90, "position": 3,
            "pointOfContactId": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "companyId": "4b1f2e3d-5c6a-4b7c-8d9e-0f1a2b3c4d5e",
            "createdAt": "2026-10-01T09:00:00.000Z", "updatedAt": "2026-11-29T10:00:00.000Z", "deletedAt": null,
        }
    });
    while e.to_string().len() < 2048 {
        notes.push(json!({"at": "2026-11-29T10:00:00.000Z", "by": "Zoë Nguyễn", "text": "Called the buyer; terms agreed."}));
        e["record"]["notes"] = Value::Array(notes.clone());
    }
    e.to_string()
}

fn filter() -> Filter {
    Filter::from_value(&json!({
        "objectName": ["opportunity"],
        "updatedFields": ["stage"],
        "record": {
            "stage": ["WON"],
            "amount": {"amountMicros": [{"numeric": [">=", 100000000000u64]}], "currencyCode": [{"anything-but": ["USD"]}]}
        }
    }))
    .expect("a valid filter")
}

fn bench(c: &mut Criterion) {
    let text = envelope();
    assert!((2048..2300).contains(&text.len()), "{}", text.len());
    let parsed: Value = serde_json::from_str(&text).unwrap();
    let filter = filter();
    assert!(filter.matches(&parsed));
    let mut group = c.benchmark_group("filter_5_conditions_2KiB");
    group.bench_function("match", |b| b.iter(|| filter.matches(black_box(&parsed))));
    group.bench_function("parse_and_match", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_str(black_box(&text)).unwrap();
            filter.matches(&v)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
