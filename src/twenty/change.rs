//! One change of one record, as Twenty's records show it: the record's id and its
//! `updatedAt` (or, once soft-deleted, its `deletedAt`). A webhook's `record` and the REST
//! API's row carry the same columns, so a change delivered by a webhook and the same change
//! found through the API have the same key: the worker's idempotency acts on it once.
//!
//! Timestamps are compared as instants, not as text: `…T10:00:00Z` and `…T10:00:00.000Z`
//! are one change.

use serde::Deserialize;

/// The timestamps a record carries. Unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Stamps {
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub deleted_at: Option<String>,
}

/// What the record's timestamps say happened last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Created,
    Updated,
    Deleted,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
        }
    }

    /// The action of an event name's tail, when it is one a change key can stand for. A
    /// restore does not move `updatedAt`, so keyed on the timestamps it would pass for the
    /// update before it and be skipped; it, a hard delete (`destroyed`) and anything newer
    /// are keyed on the event itself instead.
    pub(crate) fn keyed(action: &str) -> Option<Self> {
        match action {
            "created" => Some(Self::Created),
            "updated" => Some(Self::Updated),
            "deleted" => Some(Self::Deleted),
            _ => None,
        }
    }
}

impl Stamps {
    /// When the last change happened, in the one form a key uses: `deletedAt` for a
    /// soft-deleted record, else `updatedAt`. None when the record carries neither.
    pub(crate) fn changed_at(&self) -> Option<String> {
        self.deleted_at
            .as_deref()
            .or(self.updated_at.as_deref())
            .map(normalise)
    }

    /// Deleted when `deletedAt` is set; created when `updatedAt` is `createdAt` (Twenty
    /// sets both at once); updated otherwise.
    pub(crate) fn action(&self) -> Action {
        if self.deleted_at.is_some() {
            Action::Deleted
        } else if let (Some(c), Some(u)) = (&self.created_at, &self.updated_at)
            && normalise(c) == normalise(u)
        {
            Action::Created
        } else {
            Action::Updated
        }
    }
}

/// One text per instant: RFC 3339 in UTC with milliseconds (Twenty's own form), or with
/// nanoseconds when the time has a finer part. A text that is no RFC 3339 time is kept as
/// it is: still a key, if not a normalised one.
pub(crate) fn normalise(text: &str) -> String {
    let Ok(at) = humantime::parse_rfc3339_weak(text.trim()) else {
        return text.to_owned();
    };
    let sub_milli = crate::clock::since_epoch(at).subsec_nanos() % 1_000_000;
    if sub_milli == 0 {
        humantime::format_rfc3339_millis(at).to_string()
    } else {
        humantime::format_rfc3339_nanos(at).to_string()
    }
}

/// `<object>:<recordId>@<updatedAt>`, or for a deletion (`deletion`: a soft-delete event,
/// or a row whose `deletedAt` is set) `...@deleted:<deletedAt>`, timestamps normalised. A
/// deletion's webhook may carry the record as it was before (no `deletedAt`): its key then
/// takes `updatedAt`, still marked deleted, so that it can never pass for the update before
/// it. None without a record id or a timestamp (schema events, records without timestamps).
pub(crate) fn key(
    object: &str,
    record_id: Option<&str>,
    deletion: bool,
    stamps: &Stamps,
) -> Option<String> {
    let record_id = record_id.filter(|id| !id.is_empty())?;
    if deletion {
        let at = stamps.changed_at()?;
        return Some(format!("{object}:{record_id}@deleted:{at}"));
    }
    let updated = normalise(stamps.updated_at.as_deref()?);
    Some(format!("{object}:{record_id}@{updated}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamps(json: &str) -> Stamps {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_key_and_the_action_follow_the_timestamps() {
        let created = stamps(r#"{"createdAt":"T1","updatedAt":"T1","deletedAt":null}"#);
        assert_eq!(created.action(), Action::Created);
        assert_eq!(
            key("person", Some("r"), false, &created).unwrap(),
            "person:r@T1"
        );
        let updated = stamps(r#"{"createdAt":"T1","updatedAt":"T2","name":{"x":1}}"#);
        assert_eq!(updated.action(), Action::Updated);
        assert_eq!(updated.changed_at().as_deref(), Some("T2"));
        let deleted = stamps(r#"{"createdAt":"T1","updatedAt":"T3","deletedAt":"T3"}"#);
        assert_eq!(deleted.action(), Action::Deleted);
        assert_eq!(
            key("person", Some("r"), true, &deleted).unwrap(),
            "person:r@deleted:T3"
        );
        // A deletion event carrying the record as it was before: never the update's key.
        assert_eq!(
            key("person", Some("r"), true, &updated).unwrap(),
            "person:r@deleted:T2"
        );
        assert_ne!(
            key("person", Some("r"), true, &updated),
            key("person", Some("r"), false, &updated)
        );
        assert_eq!(key("person", None, false, &updated), None);
        assert_eq!(key("person", Some("r"), false, &Stamps::default()), None);
    }

    #[test]
    fn one_instant_is_one_key_in_any_of_its_forms() {
        let at = |u: &str| stamps(&format!(r#"{{"updatedAt":"{u}"}}"#));
        let keys: Vec<_> = [
            "2026-11-02T10:00:00Z",
            "2026-11-02T10:00:00.000Z",
            "2026-11-02T10:00:00.000000Z",
            "2026-11-02 10:00:00",
        ]
        .iter()
        .map(|u| key("person", Some("r"), false, &at(u)).unwrap())
        .collect();
        assert!(
            keys.iter()
                .all(|k| k == "person:r@2026-11-02T10:00:00.000Z"),
            "{keys:?}"
        );
        // A finer time keeps its precision: two changes in one millisecond stay two.
        assert_eq!(
            key(
                "person",
                Some("r"),
                false,
                &at("2026-11-02T10:00:00.000250Z")
            )
            .unwrap(),
            "person:r@2026-11-02T10:00:00.000250000Z"
        );
        let created = stamps(
            r#"{"createdAt":"2026-11-02T10:00:00Z","updatedAt":"2026-11-02T10:00:00.000Z"}"#,
        );
        assert_eq!(created.action(), Action::Created);
        let deleted = stamps(r#"{"updatedAt":"T","deletedAt":"2026-11-02T10:00:00Z"}"#);
        assert_eq!(
            key("person", Some("r"), true, &deleted).unwrap(),
            "person:r@deleted:2026-11-02T10:00:00.000Z"
        );
    }

    #[test]
    fn only_created_updated_and_deleted_are_keyed_on_the_change() {
        for (action, keyed) in [
            ("created", true),
            ("updated", true),
            ("deleted", true),
            ("restored", false),
            ("destroyed", false),
            ("upserted", false),
        ] {
            assert_eq!(Action::keyed(action).is_some(), keyed, "{action}");
        }
    }
}
