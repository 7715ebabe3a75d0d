//! What Twenty sends, parsed into one typed value.
//!
//! Four shapes are accepted (see `docs/message-format.md`): a single record, a batch
//! (`items`), a schema event (`metadata.<name>.<action>`) and the documented
//! `{event, data, timestamp}` example. Record contents are never given a schema: they are
//! kept as the exact JSON text received (`RawValue`), so nothing is reformatted or lost.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EventError {
    /// Syntax or type error; the text holds a position, never a piece of the body.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("not a Twenty event: {0}")]
    NotTwenty(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Record,
    Batch,
    Metadata,
    Documented,
}

/// A delivery: the fields every item shares, and one item per message to queue.
#[derive(Debug)]
pub struct Payload<'a> {
    pub shape: Shape,
    pub name: EventName,
    pub workspace_id: Option<String>,
    pub webhook_id: Option<String>,
    pub event_date: Option<String>,
    pub user_id: Option<String>,
    pub workspace_member_id: Option<String>,
    pub api_key_id: Option<String>,
    pub object_metadata: Option<&'a RawValue>,
    /// Never empty; one element except for batches.
    pub items: Vec<Item<'a>>,
}

#[derive(Debug)]
pub struct Item<'a> {
    pub record_id: Option<String>,
    pub record: Option<&'a RawValue>,
    pub updated_fields: Option<&'a RawValue>,
}

/// `<objectName>.<action>`, split at the last dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventName {
    full: String,
    dot: usize,
}

impl EventName {
    pub fn parse(full: String) -> Result<Self, EventError> {
        match full.rfind('.') {
            Some(dot) if dot > 0 && dot + 1 < full.len() => Ok(Self { full, dot }),
            _ => Err(EventError::NotTwenty("event name is not <object>.<action>")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub fn object(&self) -> &str {
        &self.full[..self.dot]
    }

    pub fn action(&self) -> &str {
        &self.full[self.dot + 1..]
    }
}

/// Every top-level key we read; others are ignored. Duplicate keys are refused by serde.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    event_name: Option<String>,
    workspace_id: Option<String>,
    webhook_id: Option<String>,
    event_date: Option<String>,
    user_id: Option<String>,
    workspace_member_id: Option<String>,
    api_key_id: Option<String>,
    #[serde(borrow)]
    object_metadata: Option<&'a RawValue>,
    #[serde(borrow)]
    record: Option<&'a RawValue>,
    #[serde(borrow)]
    updated_fields: Option<&'a RawValue>,
    #[serde(borrow)]
    items: Option<Vec<WireItem<'a>>>,
    /// An object in schema events, a string in the documented shape.
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireItem<'a> {
    #[serde(borrow)]
    record: Option<&'a RawValue>,
    #[serde(borrow)]
    updated_fields: Option<&'a RawValue>,
}

/// The `event` object of a schema event.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSchemaEvent<'a> {
    #[serde(borrow)]
    record_id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireRecord<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
}

/// Deeper JSON than this is refused. Records pass through as raw text, which serde_json
/// does not depth-check, and a message a worker's parser cannot read would only poison the
/// queue. Twenty's own records are a few levels deep; serde_json's own limit is 128.
pub const MAX_DEPTH: usize = 128;

pub fn parse(body: &str) -> Result<Payload<'_>, EventError> {
    // serde would read a struct from a JSON array too; Twenty only ever sends an object.
    if !body.trim_start().starts_with('{') {
        return Err(EventError::NotTwenty("body is not a JSON object"));
    }
    if !depth_within(body.as_bytes(), MAX_DEPTH) {
        return Err(EventError::MalformedJson(format!(
            "nested deeper than {MAX_DEPTH} levels"
        )));
    }
    let wire: Wire<'_> = serde_json::from_str(body).map_err(json_error)?;

    if let Some(event) = wire.event.filter(|e| e.get().starts_with('"')) {
        return documented(&wire, event);
    }

    let name = EventName::parse(
        wire.event_name
            .clone()
            .ok_or(EventError::NotTwenty("no eventName"))?,
    )?;
    let (shape, items) = if let Some(items) = &wire.items {
        if items.is_empty() {
            return Err(EventError::NotTwenty("batch has no items"));
        }
        let items = items
            .iter()
            .map(|item| {
                let record = item
                    .record
                    .ok_or(EventError::NotTwenty("batch item has no record"))?;
                record_item(record, item.updated_fields)
            })
            .collect::<Result<_, _>>()?;
        (Shape::Batch, items)
    } else if let Some(record) = wire.record {
        (
            Shape::Record,
            vec![record_item(record, wire.updated_fields)?],
        )
    } else if let Some(event) = wire
        .event
        .filter(|_| name.as_str().starts_with("metadata."))
    {
        let schema: WireSchemaEvent<'_> = object(event, "schema event is not an object")?;
        let item = Item {
            record_id: schema.record_id.and_then(scalar_text),
            record: Some(event),
            updated_fields: None,
        };
        (Shape::Metadata, vec![item])
    } else {
        return Err(EventError::NotTwenty("no record, items or schema event"));
    };

    Ok(Payload {
        shape,
        name,
        workspace_id: wire.workspace_id,
        webhook_id: wire.webhook_id,
        event_date: wire.event_date,
        user_id: wire.user_id,
        workspace_member_id: wire.workspace_member_id,
        api_key_id: wire.api_key_id,
        object_metadata: wire.object_metadata,
        items,
    })
}

/// `{"event": "person.created", "data": {...}, "timestamp": "..."}`
fn documented<'a>(wire: &Wire<'a>, event: &'a RawValue) -> Result<Payload<'a>, EventError> {
    let name: String = serde_json::from_str(event.get()).map_err(json_error)?;
    let data = wire.data.ok_or(EventError::NotTwenty("no data"))?;
    Ok(Payload {
        shape: Shape::Documented,
        name: EventName::parse(name)?,
        workspace_id: wire.workspace_id.clone(),
        webhook_id: wire.webhook_id.clone(),
        event_date: wire.timestamp.clone(),
        user_id: None,
        workspace_member_id: None,
        api_key_id: None,
        object_metadata: None,
        items: vec![record_item(data, None)?],
    })
}

/// True when no array or object in `json` is nested deeper than `max` (brackets inside
/// strings do not count). A single pass over the bytes, before any parsing; string
/// contents, most of a Twenty body, are skipped with `memchr` rather than byte by byte.
fn depth_within(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut rest = json;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'"' => match after_string(rest) {
                Some(tail) => rest = tail,
                // Unterminated: the parser reports it.
                None => return true,
            },
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// What follows the closing quote of a string whose opening quote was just read, or None
/// when the string does not end.
fn after_string(mut rest: &[u8]) -> Option<&[u8]> {
    loop {
        let at = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[at] == b'"' {
            return rest.get(at + 1..);
        }
        // A backslash escapes the byte after it (for \uXXXX, the `u`).
        rest = rest.get(at + 2..)?;
    }
}

fn record_item<'a>(
    record: &'a RawValue,
    updated_fields: Option<&'a RawValue>,
) -> Result<Item<'a>, EventError> {
    let ids: WireRecord<'_> = object(record, "record is not an object")?;
    Ok(Item {
        record_id: ids.id.and_then(scalar_text),
        record: Some(record),
        updated_fields,
    })
}

fn object<'a, T: Deserialize<'a>>(raw: &'a RawValue, why: &'static str) -> Result<T, EventError> {
    if !raw.get().starts_with('{') {
        return Err(EventError::NotTwenty(why));
    }
    serde_json::from_str(raw.get()).map_err(json_error)
}

/// An id as text: a JSON string's content, or a number as written; anything else is no id.
fn scalar_text(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str(text).ok(),
        Some(b'-' | b'0'..=b'9') => Some(text.to_owned()),
        _ => None,
    }
}

fn json_error(err: serde_json::Error) -> EventError {
    use serde_json::error::Category;
    let what = match err.classify() {
        Category::Eof => "unexpected end of input",
        Category::Syntax | Category::Io => "syntax error",
        Category::Data => "unexpected type or duplicate key",
    };
    EventError::MalformedJson(format!(
        "{what} at line {} column {}",
        err.line(),
        err.column()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_record() {
        let body = r#"{"targetUrl":"https://x","eventName":"person.updated","objectMetadata":{"id":"om","nameSingular":"person"},"workspaceId":"ws","webhookId":"wh","eventDate":"2025-02-10T15:30:45.123Z","userId":"u","workspaceMemberId":"wm","record":{"id":"r-1","name":{"firstName":"Zoë"},"n":null},"updatedFields":["name"]}"#;
        let p = parse(body).unwrap();
        assert_eq!(p.shape, Shape::Record);
        assert_eq!(p.name.object(), "person");
        assert_eq!(p.name.action(), "updated");
        assert_eq!(p.workspace_id.as_deref(), Some("ws"));
        assert_eq!(p.user_id.as_deref(), Some("u"));
        assert_eq!(p.workspace_member_id.as_deref(), Some("wm"));
        assert_eq!(
            p.object_metadata.unwrap().get(),
            r#"{"id":"om","nameSingular":"person"}"#
        );
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.items[0].record_id.as_deref(), Some("r-1"));
        assert_eq!(
            p.items[0].record.unwrap().get(),
            r#"{"id":"r-1","name":{"firstName":"Zoë"},"n":null}"#
        );
        assert_eq!(p.items[0].updated_fields.unwrap().get(), r#"["name"]"#);
    }

    #[test]
    fn batch_items_keep_their_order() {
        let body = r#"{"eventName":"company.updated","workspaceId":"ws","items":[{"record":{"id":"a"},"updatedFields":["name"]},{"record":{"id":"b"}}],"batchSize":2}"#;
        let p = parse(body).unwrap();
        assert_eq!(p.shape, Shape::Batch);
        let ids: Vec<_> = p.items.iter().map(|i| i.record_id.as_deref()).collect();
        assert_eq!(ids, [Some("a"), Some("b")]);
        assert!(p.items[1].updated_fields.is_none());
    }

    #[test]
    fn schema_event() {
        let body = r#"{"eventName":"metadata.fieldMetadata.created","workspaceId":"ws","apiKeyId":"k","event":{"metadataName":"fieldMetadata","recordId":"f-1","properties":{},"type":"created"}}"#;
        let p = parse(body).unwrap();
        assert_eq!(p.shape, Shape::Metadata);
        assert_eq!(p.name.object(), "metadata.fieldMetadata");
        assert_eq!(p.name.action(), "created");
        assert_eq!(p.api_key_id.as_deref(), Some("k"));
        assert_eq!(p.items[0].record_id.as_deref(), Some("f-1"));
    }

    #[test]
    fn documented_shape() {
        let body =
            r#"{"event":"person.created","data":{"id":42},"timestamp":"2025-02-10T15:30:50Z"}"#;
        let p = parse(body).unwrap();
        assert_eq!(p.shape, Shape::Documented);
        assert_eq!(p.name.as_str(), "person.created");
        assert_eq!(p.event_date.as_deref(), Some("2025-02-10T15:30:50Z"));
        assert_eq!(p.items[0].record_id.as_deref(), Some("42"));
        assert!(p.workspace_id.is_none());
    }

    #[test]
    fn rejects_what_is_not_a_twenty_event() {
        let cases = [
            "[]",
            "\"x\"",
            "{}",
            r#"{"eventName":"person.created"}"#,
            r#"{"eventName":"personcreated","record":{"id":"1"}}"#,
            r#"{"eventName":".created","record":{"id":"1"}}"#,
            r#"{"eventName":"person.","record":{"id":"1"}}"#,
            r#"{"eventName":"person.created","record":"r"}"#,
            r#"{"eventName":"person.created","items":[]}"#,
            r#"{"eventName":"person.created","items":[{"updatedFields":[]}]}"#,
            r#"{"eventName":"person.created","event":{"recordId":"1"}}"#,
            r#"{"event":"person.created"}"#,
        ];
        for body in cases {
            assert!(
                matches!(parse(body), Err(EventError::NotTwenty(_))),
                "{body}: {:?}",
                parse(body).map(|p| p.shape)
            );
        }
    }

    #[test]
    fn nesting_is_limited_outside_strings_only() {
        let nest = |n: usize| {
            format!(
                r#"{{"eventName":"a.b","record":{{"id":"1","x":{}1{}}}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        // The body and the record are two levels already.
        assert!(parse(&nest(MAX_DEPTH - 2)).is_ok());
        assert!(matches!(
            parse(&nest(MAX_DEPTH - 1)),
            Err(EventError::MalformedJson(_))
        ));
        let in_strings = format!(
            r#"{{"eventName":"a.b","record":{{"id":"1","t":"{}\"{}"}}}}"#,
            "[".repeat(1000),
            "{".repeat(1000)
        );
        assert!(parse(&in_strings).is_ok());
    }

    #[test]
    fn depth_scan_follows_escapes() {
        // An escaped quote does not end the string; an escaped backslash does not escape
        // the quote after it.
        assert!(depth_within(br#"["\"[[[", 1]"#, 1));
        assert!(!depth_within(br#"["\\", [[1]]]"#, 2));
        assert!(depth_within(br#"["\\", [1]]"#, 2));
        assert!(!depth_within(br#"{"a\"":{"b":[1]}}"#, 2));
        // Unterminated strings and a trailing backslash end the scan without a verdict of
        // their own: the parser refuses them.
        for text in [&br#"[["#[..], br#"["abc"#, br#"["ab\"#, br#"[""#] {
            assert!(depth_within(text, 2));
        }
        assert!(!depth_within(b"[[[", 2));
    }

    #[test]
    fn malformed_json_never_echoes_the_body() {
        for body in [
            "{",
            r#"{"eventName": 12}"#,
            r#"{"eventName":"secret-value","eventName":"x.y","record":{}}"#,
            r#"{"eventName":"a.b","record":{"id":"1"}} trailing"#,
        ] {
            match parse(body) {
                Err(EventError::MalformedJson(m)) => {
                    assert!(!m.contains("secret") && !m.contains("12"), "{m}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
