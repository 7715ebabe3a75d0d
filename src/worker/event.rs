//! A queued envelope as the worker reads it: the fields routing and handlers need, and the
//! exact bytes, which are what gets forwarded.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use thiserror::Error;

use super::idempotency::Mode;
use crate::envelope::{RECONCILED_VERSION, RECONCILIATION, VERSION};
use crate::twenty::change::{self, Stamps};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EventError {
    #[error("the message is not a twenty-webhook envelope")]
    NotAnEnvelope,
    #[error(
        "envelope version {0} is not one this worker knows (it knows {VERSION} and {RECONCILED_VERSION})"
    )]
    UnknownVersion(u64),
    #[error("the stored envelope could not be read: {0}")]
    ClaimCheck(String),
}

/// One event, parsed from its envelope. `body` is the envelope exactly as it was queued
/// (for a claim check, the stored object).
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub event_name: String,
    pub object_name: String,
    pub action: String,
    pub record_id: Option<String>,
    /// When the ingest function received it (for the event's age).
    pub received_at: Option<std::time::SystemTime>,
    /// The record change it reports (`twenty::change::key`): the same for a delivered
    /// event and for the same change found by reconciliation. Keys idempotency.
    pub change: Option<String>,
    /// True for an event found by reconciliation rather than delivered by a webhook.
    pub reconciled: bool,
    pub body: String,
    /// The SQS message it came in, when the worker knows it: a destination the event was
    /// dead-lettered for is skipped by that message's retries, not by a redrive.
    pub message_id: Option<String>,
    /// When the invocation handling it must be done with it, if it is handled in one.
    pub deadline: Option<tokio::time::Instant>,
    /// The SQS message as it came, for targets that pass it on (an SQS target keeps its
    /// attributes and FIFO ids; a target too small for the envelope takes the pointer).
    pub received: Option<Arc<Received>>,
    /// Where `record` and `updatedFields` are in `body`, found by the one parse.
    record: Option<Range<usize>>,
    updated_fields: Option<Range<usize>>,
    /// The whole envelope as JSON, parsed when a content filter first asks.
    json: OnceLock<Option<serde_json::Value>>,
    /// The change's delivery id, made when a `Mode::Lean` handler first asks.
    change_id: OnceLock<Option<String>>,
}

/// What the worker knows of the SQS message an event came in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    pub attributes: Vec<crate::dead_letter::Attribute>,
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
    /// The message's body when it was a claim-check pointer to the envelope.
    pub pointer: Option<String>,
}

/// A claim-check pointer found in a queued message.
pub(crate) use crate::envelope::ClaimCheck;

/// Every field the worker reads, in one pass over the body. All optional, so that a body
/// of another version still gives its version.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    version: Option<u64>,
    id: Option<String>,
    event_name: Option<String>,
    object_name: Option<String>,
    action: Option<String>,
    record_id: Option<String>,
    received_at: Option<String>,
    claim_check: Option<ClaimCheck>,
    /// Any shape (or none) is let through: kept as where it is in the body.
    #[serde(borrow)]
    record: Option<&'a RawValue>,
    #[serde(borrow)]
    updated_fields: Option<&'a RawValue>,
    origin: Option<String>,
}

#[derive(Deserialize)]
struct Version {
    version: Option<u64>,
}

/// What a queued message holds: an event, or a pointer to one stored in S3.
#[derive(Debug)]
pub enum Queued {
    Event(Box<Event>),
    Claim(ClaimCheck),
}

/// Where `part`, a slice of `body`, lies in it.
fn span(body: &str, part: &RawValue) -> Range<usize> {
    let start = part.get().as_ptr() as usize - body.as_ptr() as usize;
    start..start + part.get().len()
}

impl Event {
    /// Reads a queued message body, in one parse.
    pub fn parse(body: String) -> Result<Queued, EventError> {
        let wire = match serde_json::from_str::<Wire<'_>>(&body) {
            Ok(wire) => wire,
            // Not ours to read: another version's shape, or no envelope at all.
            Err(_) => {
                return Err(match serde_json::from_str::<Version>(&body) {
                    Ok(Version {
                        version: Some(version),
                    }) if !known(version) => EventError::UnknownVersion(version),
                    _ => EventError::NotAnEnvelope,
                });
            }
        };
        match wire.version {
            None => return Err(EventError::NotAnEnvelope),
            Some(version) if !known(version) => return Err(EventError::UnknownVersion(version)),
            Some(_) => {}
        }
        if let Some(check) = wire.claim_check {
            return Ok(Queued::Claim(check));
        }
        let (Some(id), Some(event_name), Some(object_name), Some(action)) =
            (wire.id, wire.event_name, wire.object_name, wire.action)
        else {
            return Err(EventError::NotAnEnvelope);
        };
        // A hard delete's record still shows the soft delete's `deletedAt`, and a restore
        // does not move `updatedAt`: keyed on the change, either would pass for the event
        // before it. Reconciliation finds neither, so they are keyed on their own id.
        let keyed = change::Action::keyed(&action);
        let change = wire
            .record
            .filter(|_| keyed.is_some())
            .and_then(|raw| serde_json::from_str::<Stamps>(raw.get()).ok())
            .and_then(|stamps| {
                let deletion = keyed == Some(change::Action::Deleted);
                change::key(&object_name, wire.record_id.as_deref(), deletion, &stamps)
            });
        let record = wire.record.map(|raw| span(&body, raw));
        let updated_fields = wire.updated_fields.map(|raw| span(&body, raw));
        Ok(Queued::Event(Box::new(Event {
            change,
            id,
            event_name,
            object_name,
            action,
            reconciled: wire.origin.as_deref() == Some(RECONCILIATION),
            record_id: wire.record_id,
            received_at: wire
                .received_at
                .and_then(|t| humantime::parse_rfc3339_weak(&t).ok()),
            body,
            message_id: None,
            deadline: None,
            received: None,
            record,
            updated_fields,
            json: OnceLock::new(),
            change_id: OnceLock::new(),
        })))
    }

    /// Where `rule` keeps what it knows of this event's record (its state, its bursts):
    /// `<rule>#<object>:<recordId>`; None for an event without a record id.
    pub fn record_key(&self, rule: &str) -> Option<String> {
        let record_id = self.record_id.as_deref()?;
        Some(format!("{rule}#{}:{record_id}", self.object_name))
    }

    /// The id a destination tells deliveries apart by, for a handler guarded so: the
    /// change's under `Mode::Lean` (where the event has one), else the envelope's.
    /// Under `Lean` twins of one change may both be sent, so they share this id:
    /// `change_` and 32 hex digits of the SHA-256 of `change`.
    pub fn delivery_id(&self, mode: Mode) -> &str {
        if mode == Mode::Strict {
            return &self.id;
        }
        let change = self.change_id.get_or_init(|| {
            let change = self.change.as_deref()?;
            Some(format!(
                "change_{}",
                &crate::envelope::body_sha256(change.as_bytes())[..32]
            ))
        });
        change.as_deref().unwrap_or(&self.id)
    }

    /// The time left for handling it, when it has a deadline.
    pub fn time_left(&self) -> Option<std::time::Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
    }

    /// Reads a stored envelope (the object a claim check points to), checking its hash.
    pub fn from_stored(bytes: Vec<u8>, check: &ClaimCheck) -> Result<Self, EventError> {
        if !check.matches(&bytes) {
            return Err(EventError::ClaimCheck(
                "the stored envelope does not match the hash in the message".into(),
            ));
        }
        let body = String::from_utf8(bytes)
            .map_err(|_| EventError::ClaimCheck("the stored envelope is not UTF-8".into()))?;
        match Self::parse(body)? {
            Queued::Event(event) => Ok(*event),
            Queued::Claim(_) => Err(EventError::ClaimCheck(
                "the stored envelope is itself a pointer".into(),
            )),
        }
    }

    /// This event with `fields` added to (or replacing those of) its envelope: what a rule
    /// that adds to the envelope (`includePrevious`) filters, shapes and sends. The same
    /// event otherwise: its id, change, message and deadline.
    pub fn with_fields(&self, fields: serde_json::Map<String, serde_json::Value>) -> Self {
        let mut envelope = match self.json() {
            Some(serde_json::Value::Object(map)) => map.clone(),
            _ => serde_json::Map::new(),
        };
        envelope.extend(fields);
        let json = serde_json::Value::Object(envelope);
        let body = json.to_string();
        let (record, updated_fields) = match serde_json::from_str::<Wire<'_>>(&body) {
            Ok(wire) => (
                wire.record.map(|raw| span(&body, raw)),
                wire.updated_fields.map(|raw| span(&body, raw)),
            ),
            Err(_) => (None, None),
        };
        Self {
            body,
            record,
            updated_fields,
            json: OnceLock::from(Some(json)),
            ..self.clone()
        }
    }

    /// The envelope as JSON (for content filters), parsed once, when first asked for.
    pub fn json(&self) -> Option<&serde_json::Value> {
        self.json
            .get_or_init(|| serde_json::from_str(&self.body).ok())
            .as_ref()
    }

    /// The record, as Twenty sent it, read into `T`.
    pub fn record<T: DeserializeOwned>(&self) -> Option<T> {
        let text = self.body.get(self.record.clone()?)?;
        serde_json::from_str(text).ok()
    }

    /// The fields an update changed (`updatedFields`), empty for other events.
    pub fn updated_fields(&self) -> Vec<String> {
        self.updated_fields
            .clone()
            .and_then(|span| self.body.get(span))
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
    }
}

/// A version this worker reads.
fn known(version: u64) -> bool {
    version == u64::from(VERSION) || version == u64::from(RECONCILED_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: &str) -> Event {
        match Event::parse(body.to_owned()) {
            Ok(Queued::Event(e)) => *e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_parse_finds_the_record_and_updated_fields_wherever_they_are() {
        let e = event(
            r#"{"version":1,"id":"é\"1","eventName":"person.updated","objectName":"person","action":"updated","recordId":"r","updatedFields":["name","emails"],"record":{"id":"r","name":{"firstName":"Zoë \"Z\""},"updatedAt":"2026-11-02T10:00:00Z"}}"#,
        );
        assert_eq!(e.id, "é\"1");
        assert_eq!(e.updated_fields(), ["name", "emails"]);
        let record: serde_json::Value = e.record().unwrap();
        assert_eq!(record["name"]["firstName"], "Zoë \"Z\"");
        assert_eq!(
            e.change.as_deref(),
            Some("person:r@2026-11-02T10:00:00.000Z")
        );
        let bare = event(
            r#"{"version":2,"id":"x","eventName":"person.created","objectName":"person","action":"created","recordId":null,"record":null,"updatedFields":null}"#,
        );
        assert!(bare.updated_fields().is_empty() && bare.record::<serde_json::Value>().is_none());
    }

    #[test]
    fn added_fields_keep_the_event_and_are_found_by_every_reader() {
        let mut e = event(
            r#"{"version":1,"id":"e1","eventName":"opportunity.updated","objectName":"opportunity","action":"updated","recordId":"o1","updatedFields":["stage"],"record":{"id":"o1","stage":"WON","updatedAt":"2026-11-02T10:00:00Z"}}"#,
        );
        e.message_id = Some("m1".into());
        let fields = serde_json::json!({"previous": {"stage": "PROPOSAL"}});
        let Some(fields) = fields.as_object().cloned() else {
            panic!("an object")
        };
        let added = e.with_fields(fields);
        assert_eq!(
            (added.id.as_str(), added.change.clone()),
            ("e1", e.change.clone())
        );
        assert_eq!(added.message_id.as_deref(), Some("m1"));
        assert_eq!(added.updated_fields(), ["stage"]);
        let record: serde_json::Value = added.record().unwrap();
        assert_eq!(record["stage"], "WON");
        let json: serde_json::Value = serde_json::from_str(&added.body).unwrap();
        assert_eq!(json["previous"]["stage"], "PROPOSAL");
        assert_eq!(added.json(), Some(&json));
    }

    #[test]
    fn another_version_is_named_even_when_its_fields_differ() {
        assert_eq!(
            Event::parse(r#"{"version":3,"id":7,"eventName":{"a":1}}"#.into()).unwrap_err(),
            EventError::UnknownVersion(3)
        );
        assert_eq!(
            Event::parse(r#"{"id":"x"}"#.into()).unwrap_err(),
            EventError::NotAnEnvelope
        );
        assert_eq!(
            Event::parse(r#"{"version":1,"id":7}"#.into()).unwrap_err(),
            EventError::NotAnEnvelope
        );
    }
}
