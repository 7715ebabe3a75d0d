//! One row read from Twenty's API, as the envelope the worker reads: the same attributes,
//! FIFO ids and claim checks as a delivered event (`envelope::reconciled`), as version 2.

use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;

use crate::envelope::{self, Destination, Message, Receipt};
use crate::twenty::change::{self, Stamps};
use crate::twenty::event;
pub use crate::twenty_api::Object;

/// Why a row is not queued. Either way it is skipped: the run goes on past it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChangeError {
    #[error("a {object} row without an `id` or an `updatedAt`")]
    NoChange { object: String },
    /// Unreadable, or an event SQS cannot carry (too large with no bucket for claim
    /// checks, text SQS refuses). Says which record, never what it holds.
    #[error("{object} {record} cannot be queued: {why}")]
    Unqueueable {
        object: String,
        record: String,
        why: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    id: Option<serde_json::Value>,
    #[serde(flatten)]
    stamps: Stamps,
}

/// A change ready to queue: its key (as the worker's idempotency keys it), when it
/// happened, and the message.
#[derive(Debug)]
pub struct Change {
    pub key: String,
    pub at: String,
    /// `<object>.<action>`, as the event's `eventName`.
    pub event_name: String,
    pub message: Message,
}

/// Where the messages go, and what the envelope says of where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub received_at: &'a str,
    pub workspace_id: Option<&'a str>,
    pub destination: Destination<'a>,
}

pub fn change(
    object: &Object,
    row: &RawValue,
    context: Context<'_>,
) -> Result<Change, ChangeError> {
    let unqueueable = |record: Option<&str>, why: String| ChangeError::Unqueueable {
        object: object.singular.clone(),
        record: record.unwrap_or("(no id)").to_owned(),
        why,
    };
    let head: Head = serde_json::from_str(row.get())
        .map_err(|e| unqueueable(None, format!("the row is unreadable: {e}")))?;
    let record_id = match &head.id {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let unqueueable = |why: String| unqueueable(record_id.as_deref(), why);
    let no_change = || ChangeError::NoChange {
        object: object.singular.clone(),
    };
    let deletion = head.stamps.action() == change::Action::Deleted;
    let key = change::key(
        &object.singular,
        record_id.as_deref(),
        deletion,
        &head.stamps,
    )
    .ok_or_else(no_change)?;
    let at = head.stamps.changed_at().ok_or_else(no_change)?;
    let event_name = format!("{}.{}", object.singular, head.stamps.action().as_str());
    // The payload a webhook for this change would have carried, read by the same parser.
    // The row is spliced in as text: a `Value` would reorder its keys.
    let fields = serde_json::json!({
        "eventName": event_name,
        "objectMetadata": {"id": object.metadata_id, "nameSingular": object.singular},
        "workspaceId": context.workspace_id,
        "eventDate": at,
    })
    .to_string();
    let payload_text = format!(
        "{},\"record\":{}}}",
        fields.strip_suffix('}').unwrap_or(&fields),
        row.get()
    );
    let payload =
        event::parse(&payload_text).map_err(|e| unqueueable(format!("not an event: {e}")))?;
    let id = envelope::body_sha256(format!("reconciled\n{key}").as_bytes());
    let receipt = Receipt {
        body_sha256: &id,
        received_at: context.received_at,
        signature_verified: true,
    };
    let message = envelope::reconciled(&payload, receipt, context.destination)
        .map_err(|e| unqueueable(e.to_string()))?;
    Ok(Change {
        key,
        at,
        event_name,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person() -> Object {
        Object {
            singular: "person".into(),
            plural: "people".into(),
            metadata_id: Some("om-1".into()),
        }
    }

    fn context() -> Context<'static> {
        Context {
            received_at: "2026-11-27T00:00:00.000Z",
            workspace_id: Some("ws-1"),
            destination: Destination {
                fifo: true,
                payload_bucket: None,
            },
        }
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn a_row_becomes_a_version_2_envelope_with_a_stable_id() {
        let row = raw(
            r#"{"id":"r-1","name":{"firstName":"Zoë"},"createdAt":"2026-11-01T00:00:00.000Z","updatedAt":"2026-11-02T00:00:00.000Z","deletedAt":null}"#,
        );
        let c = change(&person(), &row, context()).unwrap();
        assert_eq!(c.key, "person:r-1@2026-11-02T00:00:00.000Z");
        let v: serde_json::Value = serde_json::from_str(&c.message.body).unwrap();
        assert_eq!(v["version"], 2);
        assert_eq!(v["origin"], "reconciliation");
        assert_eq!(v["eventName"], "person.updated");
        assert_eq!(v["recordId"], "r-1");
        assert_eq!(v["eventDate"], "2026-11-02T00:00:00.000Z");
        assert_eq!(v["updatedFields"], serde_json::Value::Null);
        assert!(c.message.body.contains(row.get()), "the row byte for byte");
        let fifo = c.message.fifo.as_ref().unwrap();
        assert_eq!(fifo.group_id, "person:r-1");
        assert_eq!(fifo.deduplication_id, c.message.id);
        // The same change reconciled again has the same id.
        let again = change(
            &person(),
            &row,
            Context {
                received_at: "later",
                ..context()
            },
        )
        .unwrap();
        assert_eq!(again.message.id, c.message.id);

        let created = raw(r#"{"id":"r-2","createdAt":"T","updatedAt":"T"}"#);
        let c = change(&person(), &created, context()).unwrap();
        assert!(c.message.body.contains(r#""eventName":"person.created""#));
        let deleted = raw(r#"{"id":"r-3","createdAt":"T","updatedAt":"U","deletedAt":"U"}"#);
        let c = change(&person(), &deleted, context()).unwrap();
        assert!(c.message.body.contains(r#""eventName":"person.deleted""#));
        assert_eq!(c.key, "person:r-3@deleted:U");
    }

    #[test]
    fn rows_without_a_change_are_refused() {
        assert!(matches!(
            change(&person(), &raw(r#"{"id":"r"}"#), context()),
            Err(ChangeError::NoChange { .. })
        ));
        assert!(matches!(
            change(&person(), &raw(r#"{"updatedAt":"T"}"#), context()),
            Err(ChangeError::NoChange { .. })
        ));
    }

    #[test]
    fn a_row_that_cannot_be_queued_names_its_record_never_its_content() {
        let big = format!(
            r#"{{"id":"r-big","note":"{}","updatedAt":"2026-11-02T00:00:00.000Z"}}"#,
            "x".repeat(1_100_000)
        );
        let unsendable = "{\"id\":\"r-odd\",\"note\":\"secret\u{ffff}\",\"updatedAt\":\"T\"}";
        for (row, record) in [(big.as_str(), "r-big"), (unsendable, "r-odd")] {
            match change(&person(), &raw(row), context()) {
                Err(e @ ChangeError::Unqueueable { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains(record), "{text}");
                    assert!(!text.contains("xxxx") && !text.contains("secret"), "{text}");
                }
                other => panic!("{record}: {other:?}"),
            }
        }
    }
}
