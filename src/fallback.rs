//! The undelivered-event log line: the channel of last resort when SQS will not take an
//! acknowledged event, and the format `twenty-replay` reads back.
//!
//! Each line is one JSON object, written to standard output, which Lambda sends to
//! CloudWatch Logs, a channel independent of SQS. The first line of an event is also a
//! CloudWatch Embedded Metric Format document, so `TwentyWebhook/UndeliveredEvents` counts
//! them with no extra call. Envelopes larger than one log event can hold are split over
//! several lines (`part`/`parts`), which replay joins again.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::envelope::{Claim, FifoIds, Message};

/// The key that marks an undelivered line; its value is the line format's version.
pub const MARKER: &str = "twentyWebhookUndelivered";
pub const METRIC_NAMESPACE: &str = "TwentyWebhook";
pub const METRIC_NAME: &str = "UndeliveredEvents";
/// Envelope text per line. CloudWatch Logs takes events up to 256 KiB; escaping can double
/// the text, so this leaves ample room.
const PART_BYTES: usize = 64 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    #[serde(rename = "twentyWebhookUndelivered")]
    format: u32,
    /// For Lambda's log-level filtering (JSON log format): an undelivered event is an
    /// error, kept whatever application log level is set.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    level: Option<&'static str>,
    id: std::borrow::Cow<'a, str>,
    part: usize,
    parts: usize,
    #[serde(borrow)]
    envelope: std::borrow::Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attributes: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fifo: Option<FifoIds>,
    /// For an envelope bound for S3: where, and the pointer message to queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claim_check: Option<LineClaim>,
    // Written for CloudWatch; replay has no use for them.
    #[serde(
        rename = "_aws",
        skip_deserializing,
        skip_serializing_if = "Option::is_none"
    )]
    emf: Option<Box<RawValue>>,
    #[serde(
        rename = "UndeliveredEvents",
        skip_deserializing,
        skip_serializing_if = "Option::is_none"
    )]
    metric: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct LineClaim {
    bucket: String,
    key: String,
    pointer: String,
}

/// The lines that keep `message` (the whole envelope, also when it is bound for S3);
/// `now_ms` stamps the metric. Errs only if serde_json cannot write them, which strings and
/// numbers never cause: the caller logs it rather than panicking (this runs in `Drop`).
pub fn lines(
    message: &Message,
    reason: &str,
    now_ms: u64,
) -> Result<Vec<String>, serde_json::Error> {
    let whole = message
        .claim
        .as_ref()
        .map_or(&message.body, |c| &c.envelope);
    let pieces = split(whole, PART_BYTES);
    let parts = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(part, text)| {
            let first = part == 0;
            let line = Line {
                format: 1,
                level: Some("ERROR"),
                id: message.id.as_str().into(),
                part,
                parts,
                envelope: text.into(),
                reason: first.then(|| reason.into()),
                attributes: first.then(|| {
                    message
                        .attributes
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.clone()))
                        .collect()
                }),
                fifo: message.fifo.clone().filter(|_| first),
                claim_check: message.claim.as_ref().filter(|_| first).map(|c| LineClaim {
                    bucket: c.bucket.clone(),
                    key: c.key.clone(),
                    pointer: message.body.clone(),
                }),
                emf: first.then(|| emf(now_ms)).flatten(),
                metric: first.then_some(1),
            };
            serde_json::to_string(&line)
        })
        .collect()
}

/// The Embedded Metric Format part; None only if the literal were not JSON (it is).
fn emf(now_ms: u64) -> Option<Box<RawValue>> {
    let text = format!(
        r#"{{"Timestamp":{now_ms},"CloudWatchMetrics":[{{"Namespace":"{METRIC_NAMESPACE}","Dimensions":[[]],"Metrics":[{{"Name":"{METRIC_NAME}","Unit":"Count"}}]}}]}}"#
    );
    RawValue::from_string(text).ok()
}

/// Splits at character boundaries into pieces of at most `max` bytes (at least one piece).
fn split(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        pieces.push(head);
        rest = tail;
    }
    pieces.push(rest);
    pieces
}

/// What a log export held: messages ready to send again, and what could not be used.
#[derive(Debug, Default)]
pub struct Recovery {
    /// In the order their first line appeared; each id once.
    pub messages: Vec<Message>,
    /// Ids seen more than once (a line exported twice): sent once.
    pub duplicates: usize,
    /// Events some of whose parts are missing: not sent, by id.
    pub incomplete: Vec<String>,
}

struct Pending {
    order: usize,
    parts: Vec<Option<String>>,
    attributes: BTreeMap<String, String>,
    fifo: Option<FifoIds>,
    claim: Option<LineClaim>,
    complete: bool,
}

/// Reads undelivered lines out of any text: raw log lines, lines with a prefix (timestamp,
/// request id), several on one line, or JSON exports (`aws logs filter-log-events`, Logs
/// Insights) whose records hold the line as a string. Anything else is passed over.
pub fn recover(text: &str) -> Recovery {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut recovery = Recovery::default();
    for value in objects(text) {
        collect(&value, &mut pending, &mut recovery);
    }
    let mut done: Vec<(usize, String, Pending)> = pending
        .into_iter()
        .map(|(id, p)| (p.order, id, p))
        .collect();
    done.sort_by_key(|(order, ..)| *order);
    for (_, id, p) in done {
        if p.parts.iter().any(Option::is_none) {
            recovery.incomplete.push(id);
            continue;
        }
        let whole: String = p.parts.into_iter().flatten().collect();
        let (body, claim) = match p.claim {
            None => (whole, None),
            Some(c) => (
                c.pointer,
                Some(Claim {
                    bucket: c.bucket,
                    key: c.key,
                    envelope: whole,
                }),
            ),
        };
        recovery.messages.push(Message {
            attributes: known_attributes(&p.attributes),
            fifo: p.fifo,
            id,
            body,
            claim,
        });
    }
    recovery
}

/// Takes an undelivered line, or looks inside anything that may wrap one.
fn collect(
    value: &serde_json::Value,
    pending: &mut HashMap<String, Pending>,
    recovery: &mut Recovery,
) {
    use serde_json::Value;
    match value {
        Value::Object(map) if !map.contains_key(MARKER) => {
            map.values().for_each(|v| collect(v, pending, recovery));
        }
        Value::Object(_) => take_line(value, pending, recovery),
        Value::Array(items) => items.iter().for_each(|v| collect(v, pending, recovery)),
        Value::String(text) if text.contains(MARKER) => {
            objects(text)
                .iter()
                .for_each(|v| collect(v, pending, recovery));
        }
        _ => {}
    }
}

fn take_line(
    value: &serde_json::Value,
    pending: &mut HashMap<String, Pending>,
    recovery: &mut Recovery,
) {
    let Ok(line) = Line::deserialize(value) else {
        return;
    };
    if line.parts == 0 || line.part >= line.parts {
        return;
    }
    let order = pending.len();
    let entry = pending
        .entry(line.id.clone().into_owned())
        .or_insert_with(|| Pending {
            order,
            parts: vec![None; line.parts],
            attributes: BTreeMap::new(),
            fifo: None,
            claim: None,
            complete: false,
        });
    if entry.parts.len() != line.parts {
        return;
    }
    if entry.parts[line.part].is_some() {
        if line.part == 0 && entry.complete {
            recovery.duplicates += 1;
        }
        return;
    }
    entry.parts[line.part] = Some(line.envelope.into_owned());
    if line.part == 0 {
        entry.attributes = line.attributes.unwrap_or_default();
        entry.fifo = line.fifo;
        entry.claim = line.claim_check;
    }
    entry.complete = entry.parts.iter().all(Option::is_some);
}

/// Every JSON object in `text`, starting at its first `{`.
fn objects(text: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let mut stream =
            serde_json::Deserializer::from_str(&rest[start..]).into_iter::<serde_json::Value>();
        match stream.next() {
            Some(Ok(value)) => {
                let used = stream.byte_offset();
                out.push(value);
                rest = &rest[start + used..];
            }
            _ => rest = &rest[start + 1..],
        }
    }
    out
}

/// Attribute names are fixed by the envelope format; unknown ones in a line are dropped.
fn known_attributes(found: &BTreeMap<String, String>) -> Vec<(&'static str, String)> {
    ["eventName", "objectName", "action", "workspaceId"]
        .into_iter()
        .filter_map(|name| found.get(name).map(|v| (name, v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: String) -> Message {
        Message {
            id: "abc:1".into(),
            body,
            attributes: vec![
                ("eventName", "person.created".into()),
                ("objectName", "person".into()),
                ("action", "created".into()),
            ],
            fifo: Some(FifoIds {
                group_id: "person:r".into(),
                deduplication_id: "abc:1".into(),
            }),
            claim: None,
        }
    }

    #[test]
    fn a_line_is_an_emf_document_and_round_trips() {
        let m = message(r#"{"version":1,"id":"abc:1","record":{"name":"Zoë \"Z\""}}"#.into());
        let lines = lines(&m, "SQS said 503", 1_700_000_000_000).unwrap();
        assert_eq!(lines.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v[MARKER], 1);
        assert_eq!(v["UndeliveredEvents"], 1);
        // Kept by Lambda's log-level filtering at any application log level.
        assert_eq!(v["level"], "ERROR");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "TwentyWebhook"
        );
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(v["reason"], "SQS said 503");
        let back = recover(&lines.join("\n"));
        assert_eq!(back.messages, vec![m]);
    }

    #[test]
    fn large_envelopes_split_and_join_at_character_boundaries() {
        let body = format!(r#"{{"record":"{}"}}"#, "é€😀x".repeat(40_000));
        let m = message(body);
        let lines = lines(&m, "r", 0).unwrap();
        assert!(lines.len() > 3);
        assert!(lines.iter().all(|l| l.len() < 256 * 1024));
        // Parts in any order, each exported twice, with prefixes and wrapped records.
        let mut input: Vec<String> = lines
            .iter()
            .rev()
            .map(|l| format!("2025-02-10T15:30:45.123Z\tabc-request\t{l}"))
            .collect();
        input.push(serde_json::json!({ "@message": lines[0] }).to_string());
        input.extend(lines.iter().cloned());
        let back = recover(&input.join("\n"));
        assert_eq!(back.messages, vec![m]);
        assert_eq!(back.duplicates, 2);
        assert!(back.incomplete.is_empty());
    }

    #[test]
    fn a_claim_check_keeps_the_whole_envelope_and_the_pointer() {
        let mut m = message(r#"{"claimCheck":{"key":"k"}}"#.into());
        m.claim = Some(Claim {
            bucket: "b".into(),
            key: "k".into(),
            envelope: format!(r#"{{"record":"{}"}}"#, "y".repeat(PART_BYTES)),
        });
        let lines = lines(&m, "S3 said 503", 0).unwrap();
        assert_eq!(lines.len(), 2);
        let back = recover(&lines.join("\n"));
        assert_eq!(back.messages, vec![m]);
    }

    #[test]
    fn json_exports_of_cloudwatch_logs() {
        let line = lines(&message("{\"a\":1}".into()), "r", 0)
            .unwrap()
            .remove(0);
        // `aws logs filter-log-events --output json`, pretty-printed over many lines.
        let export = serde_json::to_string_pretty(&serde_json::json!({
            "events": [
                { "logStreamName": "s", "timestamp": 1, "message": "START RequestId: x" },
                { "logStreamName": "s", "timestamp": 2, "message": format!("{line}\n") }
            ],
            "searchedLogStreams": []
        }))
        .unwrap();
        let back = recover(&export);
        assert_eq!(back.messages.len(), 1);
        assert_eq!(back.messages[0].body, "{\"a\":1}");
    }

    #[test]
    fn missing_parts_and_noise() {
        let m = message("x".repeat(PART_BYTES * 2 + 1));
        let lines = lines(&m, "r", 0).unwrap();
        let input = [
            "START RequestId: 1",
            "not json {",
            r#"{"level":"INFO","msg":"queued"}"#,
            lines[0].as_str(),
            lines[2].as_str(),
        ];
        let back = recover(&input.join("\n"));
        assert!(back.messages.is_empty());
        assert_eq!(back.incomplete, vec!["abc:1".to_owned()]);
    }

    #[test]
    fn several_lines_on_one_line_of_text() {
        let a = lines(&message("{\"a\":1}".into()), "r", 0)
            .unwrap()
            .remove(0);
        let mut other = message("{\"b\":2}".into());
        other.id = "def".into();
        let b = lines(&other, "r", 0).unwrap().remove(0);
        let back = recover(&format!("{a}\t{b}"));
        let ids: Vec<_> = back.messages.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["abc:1", "def"]);
    }
}
