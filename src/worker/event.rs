//! A queued envelope as the worker reads it: the fields routing and handlers need, and the
//! exact bytes, which are what gets forwarded.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use thiserror::Error;

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
}

/// A claim-check pointer found in a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClaimCheck {
    pub bucket: String,
    pub key: String,
    pub sha256: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    id: String,
    event_name: String,
    object_name: String,
    action: String,
    record_id: Option<String>,
    #[serde(default)]
    received_at: Option<String>,
    #[serde(default)]
    claim_check: Option<ClaimCheck>,
    /// Read for its timestamps only; any shape (or none) is let through.
    #[serde(default)]
    record: Option<Box<RawValue>>,
    #[serde(default)]
    origin: Option<String>,
}

#[derive(Deserialize)]
struct Version {
    version: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Parts<'a> {
    #[serde(borrow)]
    record: Option<&'a RawValue>,
    updated_fields: Option<Vec<String>>,
}

/// What a queued message holds: an event, or a pointer to one stored in S3.
#[derive(Debug)]
pub enum Queued {
    Event(Event),
    Claim(ClaimCheck),
}

impl Event {
    /// Reads a queued message body.
    pub fn parse(body: String) -> Result<Queued, EventError> {
        // The version first, skipping the rest unread: another version may not parse as ours.
        let version = serde_json::from_str::<Version>(&body)
            .ok()
            .and_then(|v| v.version)
            .ok_or(EventError::NotAnEnvelope)?;
        if version != u64::from(VERSION) && version != u64::from(RECONCILED_VERSION) {
            return Err(EventError::UnknownVersion(version));
        }
        let wire: Wire = serde_json::from_str(&body).map_err(|_| EventError::NotAnEnvelope)?;
        if let Some(check) = wire.claim_check {
            return Ok(Queued::Claim(check));
        }
        // A hard delete's record still shows the soft delete's `deletedAt`, and a restore
        // does not move `updatedAt`: keyed on the change, either would pass for the event
        // before it. Reconciliation finds neither, so they are keyed on their own id.
        let action = change::Action::keyed(&wire.action);
        let change = wire
            .record
            .as_deref()
            .filter(|_| action.is_some())
            .and_then(|raw| serde_json::from_str::<Stamps>(raw.get()).ok())
            .and_then(|stamps| {
                let deletion = action == Some(change::Action::Deleted);
                change::key(
                    &wire.object_name,
                    wire.record_id.as_deref(),
                    deletion,
                    &stamps,
                )
            });
        Ok(Queued::Event(Event {
            change,
            id: wire.id,
            event_name: wire.event_name,
            object_name: wire.object_name,
            action: wire.action,
            reconciled: wire.origin.as_deref() == Some(RECONCILIATION),
            record_id: wire.record_id,
            received_at: wire
                .received_at
                .and_then(|t| humantime::parse_rfc3339_weak(&t).ok()),
            body,
            message_id: None,
            deadline: None,
        }))
    }

    /// The time left for handling it, when it has a deadline.
    pub fn time_left(&self) -> Option<std::time::Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
    }

    /// Reads a stored envelope (the object a claim check points to), checking its hash.
    pub fn from_stored(bytes: Vec<u8>, check: &ClaimCheck) -> Result<Self, EventError> {
        if crate::envelope::body_sha256(&bytes) != check.sha256 {
            return Err(EventError::ClaimCheck(
                "the stored envelope does not match the hash in the message".into(),
            ));
        }
        let body = String::from_utf8(bytes)
            .map_err(|_| EventError::ClaimCheck("the stored envelope is not UTF-8".into()))?;
        match Self::parse(body)? {
            Queued::Event(event) => Ok(event),
            Queued::Claim(_) => Err(EventError::ClaimCheck(
                "the stored envelope is itself a pointer".into(),
            )),
        }
    }

    /// The record, as Twenty sent it, read into `T`.
    pub fn record<T: DeserializeOwned>(&self) -> Option<T> {
        let parts: Parts<'_> = serde_json::from_str(&self.body).ok()?;
        serde_json::from_str(parts.record?.get()).ok()
    }

    /// The fields an update changed (`updatedFields`), empty for other events.
    pub fn updated_fields(&self) -> Vec<String> {
        serde_json::from_str::<Parts<'_>>(&self.body)
            .ok()
            .and_then(|p| p.updated_fields)
            .unwrap_or_default()
    }
}
