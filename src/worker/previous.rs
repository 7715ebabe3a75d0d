//! `includePrevious`: what the updated fields held before a change. Twenty sends the new
//! record and the names of the fields that changed, never their old values; the worker
//! keeps, per rule and record, the last state it saw, and tells each update the values
//! its updated fields had there (`previous`), or why it cannot (`previousMissing`).
//!
//! Plain code: `step` decides, from the stored state and the event, what the event is told
//! and what is stored next; `RecordStates` keeps the state (`crate::aws` in DynamoDB);
//! `Previous` does both for one rule.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::event::Event;
use super::idempotency::LedgerFuture;
use crate::adapter::AdapterError;

/// The most a stored state's record takes (its fields as JSON): past it, fields are not
/// kept and an update of them says `too_large`. A DynamoDB write costs one unit per KB.
pub const KEEP_BYTES: usize = 16 * 1024;

/// Why an updated field's previous value is not given.
pub const FIRST_SEEN: &str = "first_seen";
pub const TOO_LARGE: &str = "too_large";
pub const NOT_IN_RECORD: &str = "not_in_record";
pub const OUT_OF_ORDER: &str = "out_of_order";

/// A record's fields as they were at one change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The change's `updatedAt`, in nanoseconds since the epoch.
    pub at: u64,
    pub values: Map<String, Value>,
    /// Fields left out for size.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<String>,
}

/// What the worker keeps of one record for one rule: its last state, and what the change
/// that made it was told (so that a redelivery of that change is told the same).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub current: Snapshot,
    #[serde(default)]
    pub told: Told,
}

/// What one change is told: the previous values of its updated fields, and why some (or
/// all) are missing. `previous` is None for the first change the worker sees.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Told {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub missing: Map<String, Value>,
}

/// The record's fields, those that fit in `budget` bytes of JSON, in the record's order.
fn snapshot(at: u64, record: &Map<String, Value>, budget: usize) -> Snapshot {
    let mut kept = Snapshot {
        at,
        ..Snapshot::default()
    };
    let mut used = 0;
    for (name, value) in record {
        let size = name.len() + value.to_string().len() + 4;
        if used + size <= budget {
            used += size;
            kept.values.insert(name.clone(), value.clone());
        } else {
            kept.dropped.push(name.clone());
        }
    }
    kept
}

/// Every updated field missing for `why`.
fn all_missing(updated: &[String], why: &str) -> Map<String, Value> {
    updated
        .iter()
        .map(|f| (f.clone(), Value::String(why.to_owned())))
        .collect()
}

/// What a change at `at` to `record`, updating `updated`, is told, given the stored
/// state; and the state to store next, None when the stored one stays (it is this change
/// already, or a later one).
pub fn step(
    stored: Option<&State>,
    at: u64,
    record: &Map<String, Value>,
    updated: &[String],
    budget: usize,
) -> (Told, Option<State>) {
    let told = match stored {
        None => Told {
            previous: None,
            missing: all_missing(updated, FIRST_SEEN),
        },
        // Told before: a redelivery, or the same change found by reconciliation.
        Some(state) if state.current.at == at => return (state.told.clone(), None),
        // A later change is stored: this one's state before it is gone.
        Some(state) if state.current.at > at => {
            let told = Told {
                previous: None,
                missing: all_missing(updated, OUT_OF_ORDER),
            };
            return (told, None);
        }
        Some(state) => {
            let before = &state.current;
            let (mut previous, mut missing) = (Map::new(), Map::new());
            for field in updated {
                if let Some(value) = before.values.get(field) {
                    previous.insert(field.clone(), value.clone());
                } else {
                    let why = if before.dropped.contains(field) {
                        TOO_LARGE
                    } else {
                        NOT_IN_RECORD
                    };
                    missing.insert(field.clone(), Value::String(why.to_owned()));
                }
            }
            Told {
                previous: Some(previous),
                missing,
            }
        }
    };
    let next = State {
        current: snapshot(at, record, budget),
        told: told.clone(),
    };
    (told, Some(next))
}

/// Where a rule keeps its records' states.
pub trait RecordStates: Send + Sync + 'static {
    /// The state stored under `key`, read consistently.
    fn load<'a>(&'a self, key: &'a str) -> LedgerFuture<'a, Option<State>>;
    /// Stores `state` unless a state as late or later is stored already (another worker
    /// got there first): false then.
    fn save<'a>(&'a self, key: &'a str, state: &'a State) -> LedgerFuture<'a, bool>;
}

/// A race lost to another worker's write is read again and decided again, this often.
const TRIES: usize = 3;

/// One rule's `includePrevious`: its states, under its name.
#[derive(Clone)]
pub struct Previous {
    states: Arc<dyn RecordStates>,
    rule: Arc<str>,
}

impl Previous {
    pub fn new(states: Arc<dyn RecordStates>, rule: &str) -> Self {
        Self {
            states,
            rule: Arc::from(rule),
        }
    }

    /// The event as this rule sees it: an update gains `previous` and `previousMissing`;
    /// a creation or an update is kept as the record's state. Other events (deletions,
    /// restores, events without a record or `updatedAt`) pass as they are.
    pub async fn apply(&self, event: &Arc<Event>) -> Result<Arc<Event>, AdapterError> {
        // The envelope parsed once: a filter reads it too, and `with_fields` starts from it.
        let record = event
            .json()
            .and_then(|envelope| envelope.get("record"))
            .and_then(Value::as_object);
        let (Some(key), Some(record)) = (event.record_key(&self.rule), record) else {
            return Ok(event.clone());
        };
        let updated = match event.action.as_str() {
            "updated" => event.updated_fields(),
            "created" => Vec::new(),
            _ => return Ok(event.clone()),
        };
        let Some(at) = updated_at(record) else {
            return Ok(event.clone());
        };
        let mut told = None;
        for _ in 0..TRIES {
            let stored = self.states.load(&key).await?;
            let (this, next) = step(stored.as_ref(), at, record, &updated, KEEP_BYTES);
            match next {
                Some(next) if !self.states.save(&key, &next).await? => continue,
                _ => {
                    told = Some(this);
                    break;
                }
            }
        }
        let Some(told) = told else {
            return Err(AdapterError::Throttled(format!(
                "the record's state changed under {TRIES} tries"
            )));
        };
        if event.action != "updated" {
            return Ok(event.clone());
        }
        let mut extra = Map::new();
        if let Some(previous) = told.previous {
            extra.insert("previous".into(), Value::Object(previous));
        }
        if !told.missing.is_empty() {
            extra.insert("previousMissing".into(), Value::Object(told.missing));
        }
        if extra.is_empty() {
            return Ok(event.clone());
        }
        Ok(Arc::new(event.with_fields(extra)))
    }
}

/// The record's `updatedAt` in nanoseconds since the epoch.
pub(crate) fn updated_at(record: &Map<String, Value>) -> Option<u64> {
    let text = record.get("updatedAt")?.as_str()?;
    let at = humantime::parse_rfc3339_weak(text.trim()).ok()?;
    u64::try_from(crate::clock::since_epoch(at).as_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn each_update_is_told_the_values_before_it_and_a_redelivery_the_same() {
        let r1 = record(json!({"id": "o1", "stage": "NEW", "amount": 5}));
        let (told, s1) = step(None, 1, &r1, &[], KEEP_BYTES);
        assert_eq!(told.previous, None, "a creation, first seen");
        let s1 = s1.unwrap();
        let r2 = record(json!({"id": "o1", "stage": "PROPOSAL", "amount": 5}));
        let (told, s2) = step(Some(&s1), 2, &r2, &fields(&["stage"]), KEEP_BYTES);
        assert_eq!(
            told.previous,
            Some(record(json!({"stage": "NEW"}))),
            "stage before"
        );
        let s2 = s2.unwrap();
        let r3 = record(json!({"id": "o1", "stage": "WON", "amount": 5}));
        let (told, s3) = step(Some(&s2), 3, &r3, &fields(&["stage"]), KEEP_BYTES);
        assert_eq!(told.previous, Some(record(json!({"stage": "PROPOSAL"}))));
        let s3 = s3.unwrap();
        // Again (a redelivery, a reconciled twin): told the same, nothing written.
        let (again, none) = step(Some(&s3), 3, &r3, &fields(&["stage"]), KEEP_BYTES);
        assert_eq!((again, none), (told, None));
        // An older change arriving late cannot be told.
        let (late, none) = step(Some(&s3), 2, &r2, &fields(&["stage"]), KEEP_BYTES);
        assert_eq!(late.previous, None);
        assert_eq!(late.missing, record(json!({"stage": OUT_OF_ORDER})));
        assert!(none.is_none());
    }

    #[test]
    fn what_cannot_be_kept_or_was_never_seen_is_named_with_why() {
        let big = "x".repeat(KEEP_BYTES);
        let r1 = record(json!({"id": "p1", "bio": big, "city": "Paris"}));
        let (told, s1) = step(None, 1, &r1, &fields(&["city"]), KEEP_BYTES);
        assert_eq!(told.previous, None);
        assert_eq!(told.missing, record(json!({"city": FIRST_SEEN})));
        let s1 = s1.unwrap();
        assert_eq!(s1.current.dropped, ["bio"]);
        let r2 = record(json!({"id": "p1", "bio": "short", "city": "Lyon", "new": 1}));
        let (told, _) = step(
            Some(&s1),
            2,
            &r2,
            &fields(&["bio", "city", "new"]),
            KEEP_BYTES,
        );
        assert_eq!(told.previous, Some(record(json!({"city": "Paris"}))));
        assert_eq!(
            told.missing,
            record(json!({"bio": TOO_LARGE, "new": NOT_IN_RECORD}))
        );
    }

    #[test]
    fn updated_at_is_read_as_an_instant() {
        let a = updated_at(&record(json!({"updatedAt": "2026-11-02T10:00:00Z"})));
        let b = updated_at(&record(json!({"updatedAt": "2026-11-02T10:00:00.000Z"})));
        let c = updated_at(&record(json!({"updatedAt": "2026-11-02T10:00:00.001Z"})));
        assert_eq!(a, b);
        assert!(c > a);
        assert_eq!(updated_at(&record(json!({"updatedAt": null}))), None);
    }
}
