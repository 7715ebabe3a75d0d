//! The dead-letter queue as the worker fills it and `twenty-replay redrive` empties it: a
//! moved message keeps its body byte for byte, its message attributes, on FIFO its group
//! (with a deduplication id of its own, `copy_deduplication_id`), and says why
//! (`failureReason`, `failedDestination`, `lastStatus`, `attempts`); a redriven one loses
//! those and gains `redriven`. Plain code: the SQS side is `aws::SqsDeadLetters` and
//! `aws::redrive`.

use std::future::Future;
use std::pin::Pin;

/// A message attribute as received: a data type and a string or binary value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub data_type: String,
    pub string: Option<String>,
    pub binary: Option<Vec<u8>>,
}

impl Attribute {
    pub fn text(name: &str, value: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            data_type: "String".into(),
            string: Some(value.into()),
            binary: None,
        }
    }

    pub fn number(name: &str, value: impl ToString) -> Self {
        Self {
            name: name.to_owned(),
            data_type: "Number".into(),
            string: Some(value.to_string()),
            binary: None,
        }
    }
}

/// The text of attribute `name`, if the message has it.
fn text_of<'a>(attributes: &'a [Attribute], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|a| a.name == name)
        .and_then(|a| a.string.as_deref())
}

/// What the dead-letter queue holds, counted by `failedDestination` (each of a message's
/// destinations) and by the `failureReason` code, for `twenty-admin status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Census {
    /// Messages looked at.
    pub counted: u64,
    #[serde(rename = "byDestination")]
    pub by_destination: std::collections::BTreeMap<String, u64>,
    #[serde(rename = "byReason")]
    pub by_reason: std::collections::BTreeMap<String, u64>,
}

impl Census {
    pub(crate) fn add(&mut self, attributes: &[Attribute]) {
        let text = |name| text_of(attributes, name);
        self.counted += 1;
        // A message moved before it reached a handler (unreadable) names none.
        let destinations = text(FAILED_DESTINATION).unwrap_or("(none)");
        for d in destinations.split(',') {
            *self.by_destination.entry(d.to_owned()).or_default() += 1;
        }
        let code = text(FAILURE_REASON)
            .and_then(|r| r.split(':').next())
            .unwrap_or("(none)");
        *self.by_reason.entry(code.to_owned()).or_default() += 1;
    }
}

/// The attributes the worker adds to what it moves.
pub(crate) const FAILURE_REASON: &str = "failureReason";
pub(crate) const FAILED_DESTINATION: &str = "failedDestination";
pub(crate) const LAST_STATUS: &str = "lastStatus";
pub(crate) const ATTEMPTS: &str = "attempts";
/// Set by `twenty-replay redrive` on what it sends back.
pub(crate) const REDRIVEN: &str = "redriven";
/// SQS takes at most 10 attributes a message.
const MAX_ATTRIBUTES: usize = 10;
/// SQS takes at most 256 characters of text we control here; the reason is cut to it.
const MAX_REASON: usize = 256;

/// One message on its way to the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub body: String,
    pub attributes: Vec<Attribute>,
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
}

impl DeadLetter {
    /// The message as received, with why it is moved. The original attributes come first;
    /// ours replace any of the same name (a message redriven and failing again), and the
    /// optional ones give way if SQS's ten would be exceeded.
    pub fn new(
        body: String,
        original: &[Attribute],
        group_id: Option<String>,
        deduplication_id: Option<String>,
        why: &Why<'_>,
    ) -> Self {
        let reason: String = why.reason.chars().take(MAX_REASON).collect();
        let mut ours = vec![Attribute::text(FAILURE_REASON, reason)];
        if !why.destinations.is_empty() {
            ours.push(Attribute::text(
                FAILED_DESTINATION,
                why.destinations.join(","),
            ));
        }
        ours.push(Attribute::number(ATTEMPTS, why.attempts));
        if let Some(status) = why.status {
            ours.push(Attribute::number(LAST_STATUS, status));
        }
        let mut attributes = original_attributes(original);
        let room = MAX_ATTRIBUTES.saturating_sub(attributes.len()).max(1);
        attributes.extend(ours.into_iter().take(room));
        Self {
            body,
            attributes,
            group_id,
            deduplication_id,
        }
    }
}

/// The FIFO deduplication id of a copy made from a message (a dead-letter copy, a
/// redrive): SQS silently drops a message whose id it saw within five minutes, so a copy
/// never reuses the id it was made from, nor another copy's. SHA-256 of the parts, as 64
/// hex characters: within SQS's 128 however often copies are made of copies, where
/// joining the parts would be cut and collide.
pub(crate) fn copy_deduplication_id(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in parts {
        // Each part's length first: ("ab", "c") and ("a", "bc") differ.
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hex::encode(hash.finalize())
}

/// Why a message is moved.
#[derive(Debug, Clone, Copy)]
pub struct Why<'a> {
    pub reason: &'a str,
    pub destinations: &'a [String],
    pub status: Option<u16>,
    pub attempts: u32,
}

/// Which dead-lettered messages a redrive takes: all, or those of a destination, a reason
/// code, a time range (when they were dead-lettered). Every given part must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    pub destination: Option<String>,
    /// A `failureReason` code: `destination_refused`, `horizon_passed`, `unreadable`, …
    pub reason: Option<String>,
    /// Epoch milliseconds, inclusive.
    pub since_ms: Option<u64>,
    /// Epoch milliseconds, exclusive.
    pub until_ms: Option<u64>,
}

impl Filter {
    /// Whether a message with these attributes, dead-lettered at `sent_ms`, is taken.
    pub(crate) fn matches(&self, attributes: &[Attribute], sent_ms: Option<u64>) -> bool {
        let text = |name| text_of(attributes, name);
        let destination_ok = self.destination.as_deref().is_none_or(|want| {
            text(FAILED_DESTINATION).is_some_and(|d| d.split(',').any(|d| d == want))
        });
        let reason_ok = self.reason.as_deref().is_none_or(|want| {
            text(FAILURE_REASON).is_some_and(|r| r.split(':').next() == Some(want))
        });
        let time_ok = match (self.since_ms, self.until_ms, sent_ms) {
            (None, None, _) => true,
            (_, _, None) => false,
            (since, until, Some(t)) => since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u),
        };
        destination_ok && reason_ok && time_ok
    }
}

/// What a redriven message carries: the original attributes, without why it failed, and
/// `redriven` (for whoever looks at it; the worker knows a redrive by its new message id).
pub(crate) fn redriven_attributes(attributes: &[Attribute]) -> Vec<Attribute> {
    let mut out = original_attributes(attributes);
    out.push(Attribute::text(REDRIVEN, "true"));
    out
}

/// The attributes a message had before any dead-lettering or redrive.
fn original_attributes(attributes: &[Attribute]) -> Vec<Attribute> {
    attributes
        .iter()
        .filter(|a| {
            ![
                FAILURE_REASON,
                FAILED_DESTINATION,
                LAST_STATUS,
                ATTEMPTS,
                REDRIVEN,
            ]
            .contains(&a.name.as_str())
        })
        .cloned()
        .collect()
}

pub(crate) type SendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), crate::adapter::AdapterError>> + Send + 'a>>;

/// Where moved messages go.
pub trait DeadLetters: Send + Sync + 'static {
    fn send<'a>(&'a self, letter: &'a DeadLetter) -> SendFuture<'a>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_census_counts_each_destination_and_the_reason_code() {
        let mut census = Census::default();
        census.add(&[
            Attribute::text(FAILURE_REASON, "destination_refused: crm: answered 400"),
            Attribute::text(FAILED_DESTINATION, "crm,n8n"),
        ]);
        census.add(&[
            Attribute::text(FAILURE_REASON, "horizon_passed: 24 h"),
            Attribute::text(FAILED_DESTINATION, "crm"),
        ]);
        census.add(&[Attribute::text(FAILURE_REASON, "unreadable")]);
        assert_eq!(census.counted, 3);
        let pairs = |m: &std::collections::BTreeMap<String, u64>| {
            m.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>()
        };
        assert_eq!(
            pairs(&census.by_destination),
            [("(none)".into(), 1), ("crm".into(), 2), ("n8n".into(), 1)]
        );
        assert_eq!(
            pairs(&census.by_reason),
            [
                ("destination_refused".into(), 1),
                ("horizon_passed".into(), 1),
                ("unreadable".into(), 1)
            ]
        );
    }

    #[test]
    fn a_filter_takes_a_destination_a_reason_a_time_range() {
        let why = |reason: &str, destinations: &str| {
            vec![
                Attribute::text("eventName", "person.created"),
                Attribute::text(FAILURE_REASON, reason),
                Attribute::text(FAILED_DESTINATION, destinations),
            ]
        };
        let refused = why("destination_refused: crm: answered 400", "crm,n8n");
        let all = Filter::default();
        assert!(all.matches(&refused, None));
        let crm = Filter {
            destination: Some("crm".into()),
            ..Filter::default()
        };
        assert!(crm.matches(&refused, None));
        assert!(
            !crm.matches(&why("horizon_passed: x", "crm-2"), None),
            "whole names only"
        );
        let horizon = Filter {
            reason: Some("horizon_passed".into()),
            ..Filter::default()
        };
        assert!(!horizon.matches(&refused, None));
        assert!(horizon.matches(&why("horizon_passed: n8n: answered 503", "n8n"), None));
        let window = Filter {
            since_ms: Some(100),
            until_ms: Some(200),
            ..Filter::default()
        };
        assert!(window.matches(&refused, Some(100)) && !window.matches(&refused, Some(200)));
        assert!(!window.matches(&refused, Some(99)) && !window.matches(&refused, None));
        let again = redriven_attributes(&refused);
        let names: Vec<&str> = again.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["eventName", REDRIVEN]);
    }

    #[test]
    fn copies_of_copies_get_ids_of_their_own_within_sqs_limits() {
        // An envelope id as ingest makes it, then SQS message ids: each redrive extends
        // the last id with the dead-lettered message's.
        let mut id =
            "person:5f8c9a1e-0000-4000-8000-000000000001@2026-11-29T10:00:00.000Z:0".to_owned();
        let mut seen = std::collections::HashSet::new();
        for n in 0..5 {
            id = copy_deduplication_id(&[&id, &format!("2f1b7c8e-4d3a-4b6f-9e2a-00000000000{n}")]);
            assert!(id.len() <= 128 && id.chars().all(|c| c.is_ascii_hexdigit()));
            assert!(seen.insert(id.clone()), "redrive {n} repeats an earlier id");
        }
        assert_ne!(
            copy_deduplication_id(&["ab", "c"]),
            copy_deduplication_id(&["a", "bc"])
        );
        assert_eq!(
            copy_deduplication_id(&["m", "crm", "1"]),
            copy_deduplication_id(&["m", "crm", "1"]),
            "the same copy made twice is dropped once"
        );
    }

    #[test]
    fn keeps_the_original_and_adds_why() {
        let original = vec![
            Attribute::text("eventName", "person.created"),
            Attribute::text(FAILURE_REASON, "old"),
        ];
        let why = Why {
            reason: "destination_refused: crm: crm.example.com answered 400",
            destinations: &["crm".to_owned(), "n8n".to_owned()],
            status: Some(400),
            attempts: 1,
        };
        let letter = DeadLetter::new(
            "{}".into(),
            &original,
            Some("g".into()),
            Some("d".into()),
            &why,
        );
        let names: Vec<&str> = letter.attributes.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "eventName",
                FAILURE_REASON,
                FAILED_DESTINATION,
                ATTEMPTS,
                LAST_STATUS
            ]
        );
        assert_eq!(letter.attributes[1].string.as_deref(), Some(why.reason));
        assert_eq!(letter.attributes[2].string.as_deref(), Some("crm,n8n"));
        let crowded: Vec<Attribute> = (0..9)
            .map(|i| Attribute::text(&format!("a{i}"), "v"))
            .collect();
        let letter = DeadLetter::new("{}".into(), &crowded, None, None, &why);
        assert_eq!(letter.attributes.len(), 10);
        assert_eq!(
            letter.attributes[9].name, FAILURE_REASON,
            "the reason always fits"
        );
    }
}
