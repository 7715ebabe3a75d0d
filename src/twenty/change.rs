//! One change of one record, as Twenty's records show it: the record's id and its
//! `updatedAt` (or, once soft-deleted, its `deletedAt`). A webhook's `record` and the REST
//! API's row carry the same columns, so a change delivered by a webhook and the same change
//! found through the API have the same key: the worker's idempotency acts on it once.

use serde::Deserialize;

/// The timestamps a record carries. Unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stamps {
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub deleted_at: Option<String>,
}

/// What the record's timestamps say happened last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Updated,
    Deleted,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
        }
    }
}

impl Stamps {
    /// When the last change happened: `deletedAt` for a soft-deleted record, else
    /// `updatedAt`. None when the record carries neither.
    pub fn changed_at(&self) -> Option<&str> {
        self.deleted_at.as_deref().or(self.updated_at.as_deref())
    }

    /// Deleted when `deletedAt` is set; created when `updatedAt` is `createdAt` (Twenty
    /// sets both at once); updated otherwise.
    pub fn action(&self) -> Action {
        if self.deleted_at.is_some() {
            Action::Deleted
        } else if self.created_at.is_some() && self.created_at == self.updated_at {
            Action::Created
        } else {
            Action::Updated
        }
    }
}

/// `<object>:<recordId>@<updatedAt>`, or for a deletion (`deletion`: a soft-delete event,
/// or a row whose `deletedAt` is set) `...@deleted:<deletedAt>`. A deletion's webhook may
/// carry the record as it was before (no `deletedAt`): its key then takes `updatedAt`,
/// still marked deleted, so that it can never pass for the update before it. None without
/// a record id or a timestamp (schema events, records without timestamps).
pub fn key(
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
    let updated = stamps.updated_at.as_deref()?;
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
        assert_eq!(updated.changed_at(), Some("T2"));
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
}
