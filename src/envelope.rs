//! The queued message: a versioned JSON envelope per event (see `docs/message-format.md`),
//! with the attributes and FIFO ids SQS needs. Pure: no AWS types.

use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::twenty::event::{Item, Payload, Shape};

/// Bumped on any change a consumer could notice; additions of fields included.
pub const VERSION: u32 = 1;
/// Version 2 is version 1 plus `origin`: what reconciliation queues (an event found in
/// Twenty's API, not delivered by a webhook). A consumer that knows only version 1 refuses
/// it rather than take it for a delivery. The ingest function still writes version 1.
pub const RECONCILED_VERSION: u32 = 2;
/// The `origin` of a reconciled envelope.
pub const RECONCILIATION: &str = "reconciliation";

/// SQS's limit for one message, body and attributes together.
pub const SQS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// One delivery becomes at most this many messages. Only the batch shape fans out, and the
/// servers that sent it also sent each of its events singly (see docs/message-format.md),
/// so refusing an oversized batch loses nothing, while building one could exhaust memory.
pub const MAX_MESSAGES_PER_DELIVERY: usize = 1_000;
/// ... and at most this many envelope bytes together (each item carries a copy of the
/// shared fields, `objectMetadata` included). Well above any single event's 6 MiB.
pub const MAX_ENVELOPE_BYTES_PER_DELIVERY: usize = 16 * 1024 * 1024;
/// An envelope's own keys and fixed fields (`version`, `id`, `receivedAt`, ...), at most.
const ENVELOPE_OVERHEAD: usize = 640;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the batch has {count} items, over the limit of {MAX_MESSAGES_PER_DELIVERY}")]
    TooManyMessages { count: usize },
    #[error(
        "the batch would make {bytes} bytes of messages, over the limit of {MAX_ENVELOPE_BYTES_PER_DELIVERY}"
    )]
    FanOutTooLarge { bytes: usize },
    #[error("message {index} would be {size} bytes, over the SQS limit of {SQS_MAX_MESSAGE_BYTES}")]
    TooLarge { index: usize, size: usize },
    #[error(
        "the event holds characters SQS cannot carry (U+FFFE, U+FFFF, or a control character in an attribute)"
    )]
    UnsendableText,
    /// serde_json could not write the envelope: a bug, answered 500 rather than a panic.
    #[error("the envelope could not be written")]
    Unwritable,
}

/// What the receiver knew of the delivery, beside the payload itself.
#[derive(Debug, Clone, Copy)]
pub struct Receipt<'a> {
    /// Lowercase hex SHA-256 of the raw body.
    pub body_sha256: &'a str,
    /// ISO-8601 with milliseconds, UTC.
    pub received_at: &'a str,
    /// False only for unsigned deliveries let in by `TWENTY_WEBHOOK_ALLOW_UNSIGNED`.
    pub signature_verified: bool,
}

/// One message ready for SQS. Owned, so a send can outlive the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub body: String,
    /// String attributes, in a fixed order; only those that are known.
    pub attributes: Vec<(&'static str, String)>,
    /// For FIFO queues only.
    pub fifo: Option<FifoIds>,
    /// Set when the envelope was too large for SQS: `body` is then a pointer to it.
    pub claim: Option<Claim>,
}

/// An envelope stored in S3, to which the queued message points (the claim-check pattern).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub bucket: String,
    pub key: String,
    /// The whole envelope, as it is stored.
    pub envelope: String,
}

/// Where the messages go.
#[derive(Debug, Clone, Copy, Default)]
pub struct Destination<'a> {
    pub fifo: bool,
    /// With a bucket, envelopes too large for SQS are stored there; without, refused.
    pub payload_bucket: Option<&'a str>,
}

/// Serialisable so that the fallback log can carry them (camelCase, as in the log line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FifoIds {
    pub group_id: String,
    pub deduplication_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    version: u32,
    id: &'a str,
    shape: Shape,
    event_name: &'a str,
    object_name: &'a str,
    action: &'a str,
    record_id: Option<&'a str>,
    workspace_id: Option<&'a str>,
    webhook_id: Option<&'a str>,
    event_date: Option<&'a str>,
    received_at: &'a str,
    signature_verified: bool,
    user_id: Option<&'a str>,
    workspace_member_id: Option<&'a str>,
    api_key_id: Option<&'a str>,
    batch: Option<BatchPosition>,
    object_metadata: Option<&'a RawValue>,
    record: Option<&'a RawValue>,
    updated_fields: Option<&'a RawValue>,
    claim_check: Option<ClaimCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'static str>,
}

/// Where the whole envelope is, when the queued message is only a pointer to it: the
/// envelope's `claimCheck`, as the ingest function writes it and the worker (and any other
/// reader) reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ClaimCheck {
    pub bucket: String,
    pub key: String,
    /// The stored envelope's length in bytes.
    #[serde(default)]
    pub bytes: usize,
    /// Lowercase hex SHA-256 of the stored envelope.
    pub sha256: String,
}

impl ClaimCheck {
    /// Whether `stored` is the envelope this pointer was made for.
    pub fn matches(&self, stored: &[u8]) -> bool {
        body_sha256(stored) == self.sha256
    }
}

#[derive(Serialize)]
struct BatchPosition {
    index: usize,
    size: usize,
}

pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// One message per item, in order. Fails whole if any message cannot be sent to SQS, or if
/// there would be too many or too much of them, so a request is either queued entirely or
/// refused before it is acknowledged, and before the messages are built.
pub fn messages(
    payload: &Payload<'_>,
    receipt: Receipt<'_>,
    destination: Destination<'_>,
) -> Result<Vec<Message>, EnvelopeError> {
    let size = payload.items.len();
    if size > MAX_MESSAGES_PER_DELIVERY {
        return Err(EnvelopeError::TooManyMessages { count: size });
    }
    let bytes = projected_bytes(payload, receipt);
    if bytes > MAX_ENVELOPE_BYTES_PER_DELIVERY {
        return Err(EnvelopeError::FanOutTooLarge { bytes });
    }
    payload
        .items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let id = match payload.shape {
                Shape::Batch => format!("{}:{index}", receipt.body_sha256),
                _ => receipt.body_sha256.to_owned(),
            };
            let batch = (payload.shape == Shape::Batch).then_some(BatchPosition { index, size });
            message(payload, item, receipt, id, batch, destination, index, None)
        })
        .collect()
}

/// The one message for a change found through Twenty's API (`payload` a single record,
/// `receipt.body_sha256` the change's id): the same envelope, attributes and FIFO ids as a
/// delivered event, as version 2 with `origin` `"reconciliation"`.
pub fn reconciled(
    payload: &Payload<'_>,
    receipt: Receipt<'_>,
    destination: Destination<'_>,
) -> Result<Message, EnvelopeError> {
    let item = payload
        .items
        .first()
        .ok_or(EnvelopeError::TooManyMessages { count: 0 })?;
    let id = receipt.body_sha256.to_owned();
    message(
        payload,
        item,
        receipt,
        id,
        None,
        destination,
        0,
        Some(RECONCILIATION),
    )
}

#[allow(clippy::too_many_arguments)]
fn message(
    payload: &Payload<'_>,
    item: &Item<'_>,
    receipt: Receipt<'_>,
    id: String,
    batch: Option<BatchPosition>,
    destination: Destination<'_>,
    index: usize,
    origin: Option<&'static str>,
) -> Result<Message, EnvelopeError> {
    let mut envelope = Envelope {
        version: if origin.is_some() {
            RECONCILED_VERSION
        } else {
            VERSION
        },
        id: &id,
        shape: payload.shape,
        event_name: payload.name.as_str(),
        object_name: payload.name.object(),
        action: payload.name.action(),
        record_id: item.record_id.as_deref(),
        workspace_id: payload.workspace_id.as_deref(),
        webhook_id: payload.webhook_id.as_deref(),
        event_date: payload.event_date.as_deref(),
        received_at: receipt.received_at,
        signature_verified: receipt.signature_verified,
        user_id: payload.user_id.as_deref(),
        workspace_member_id: payload.workspace_member_id.as_deref(),
        api_key_id: payload.api_key_id.as_deref(),
        batch,
        object_metadata: payload.object_metadata,
        record: item.record,
        updated_fields: item.updated_fields,
        claim_check: None,
        origin,
    };
    let body = to_json(&envelope)?;

    let mut attributes = vec![
        ("eventName", payload.name.as_str().to_owned()),
        ("objectName", payload.name.object().to_owned()),
        ("action", payload.name.action().to_owned()),
    ];
    if let Some(ws) = payload.workspace_id.as_deref().filter(|w| !w.is_empty()) {
        attributes.push(("workspaceId", ws.to_owned()));
    }

    if !body_is_sendable(&body) || !attributes.iter().all(|(_, v)| v.chars().all(sqs_can_carry)) {
        return Err(EnvelopeError::UnsendableText);
    }
    let fifo = destination.fifo.then(|| FifoIds {
        group_id: group_id(payload, item),
        deduplication_id: id.clone(),
    });
    let mut message = Message {
        id: id.clone(),
        body,
        attributes,
        fifo,
        claim: None,
    };
    let size = message.sqs_size();
    if size <= SQS_MAX_MESSAGE_BYTES {
        return Ok(message);
    }
    let Some(bucket) = destination.payload_bucket else {
        return Err(EnvelopeError::TooLarge { index, size });
    };
    // Too large for SQS: the whole envelope goes to S3, the queue gets a pointer to it.
    let key = claim_key(&id);
    envelope.object_metadata = None;
    envelope.record = None;
    envelope.updated_fields = None;
    envelope.claim_check = Some(ClaimCheck {
        bucket: bucket.to_owned(),
        key: key.clone(),
        bytes: message.body.len(),
        sha256: body_sha256(message.body.as_bytes()),
    });
    let pointer = to_json(&envelope)?;
    let whole = std::mem::replace(&mut message.body, pointer);
    message.claim = Some(Claim {
        bucket: bucket.to_owned(),
        key,
        envelope: whole,
    });
    match message.sqs_size() {
        size if size > SQS_MAX_MESSAGE_BYTES => Err(EnvelopeError::TooLarge { index, size }),
        _ => Ok(message),
    }
}

/// An upper estimate of the bytes of every message of `payload`, from the lengths of what
/// each copies, without building any.
fn projected_bytes(payload: &Payload<'_>, receipt: Receipt<'_>) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let raw = |r: Option<&RawValue>| r.map_or(0, |r| r.get().len());
    // The event name appears three times (field, object and action, and as attributes).
    let shared = ENVELOPE_OVERHEAD
        + 2 * receipt.body_sha256.len()
        + receipt.received_at.len()
        + 3 * payload.name.as_str().len()
        + 2 * text(&payload.workspace_id)
        + text(&payload.webhook_id)
        + text(&payload.event_date)
        + text(&payload.user_id)
        + text(&payload.workspace_member_id)
        + text(&payload.api_key_id)
        + raw(payload.object_metadata);
    payload.items.iter().fold(0usize, |total, item| {
        total
            .saturating_add(shared)
            .saturating_add(raw(item.record))
            .saturating_add(raw(item.updated_fields))
            .saturating_add(2 * text(&item.record_id))
    })
}

/// The characters SQS accepts in a body or attribute value: #x9, #xA, #xD, #x20 to #xFFFD
/// (no surrogates exist in a `char`) and #x10000 up.
fn sqs_can_carry(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='\u{FFFD}' | '\u{10000}'..)
}

/// The envelope is JSON written by serde_json, which escapes every control character, so
/// only U+FFFE and U+FFFF (UTF-8 `EF BF BE`, `EF BF BF`) can make it unsendable. They are
/// looked for at each `EF` byte, which is rare, rather than char by char over the body.
fn body_is_sendable(body: &str) -> bool {
    let bytes = body.as_bytes();
    !memchr::memchr_iter(0xEF, bytes)
        .any(|at| matches!(bytes.get(at + 1..at + 3), Some([0xBF, 0xBE | 0xBF])))
}

/// The S3 key of a stored envelope: fixed by its id, so storing it again is harmless.
pub fn claim_key(id: &str) -> String {
    format!("twenty-webhook/{}.json", id.replace(':', "-"))
}

fn to_json(envelope: &Envelope<'_>) -> Result<String, EnvelopeError> {
    // Borrowed strings and raw JSON cannot fail to serialise; if that ever changes, the
    // request gets a 500 and nothing is queued.
    serde_json::to_string(envelope).map_err(|_| EnvelopeError::Unwritable)
}

impl Message {
    /// The size SQS counts against its limit: the body, and each attribute's name, data
    /// type ("String") and value.
    pub fn sqs_size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + "String".len() + v.len())
                .sum::<usize>()
    }
}

/// Events of one record stay in order; without a record id, those of one workspace do.
fn group_id(payload: &Payload<'_>, item: &Item<'_>) -> String {
    let raw = match (&item.record_id, &payload.workspace_id) {
        (Some(record), _) => format!("{}:{record}", payload.name.object()),
        (None, Some(ws)) => ws.clone(),
        (None, None) => payload.name.object().to_owned(),
    };
    // SQS allows 128 printable ASCII characters; anything else is hashed into that range.
    let valid = !raw.is_empty() && raw.len() <= 128 && raw.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        raw
    } else {
        body_sha256(raw.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twenty::event::parse;

    const RECEIPT: Receipt<'static> = Receipt {
        body_sha256: "abc",
        received_at: "2025-02-10T15:30:46.000Z",
        signature_verified: true,
    };

    const STANDARD: Destination<'static> = Destination {
        fifo: false,
        payload_bucket: None,
    };
    const FIFO: Destination<'static> = Destination {
        fifo: true,
        payload_bucket: None,
    };

    fn envelope(m: &Message) -> serde_json::Value {
        serde_json::from_str(&m.body).unwrap()
    }

    #[test]
    fn single_record_envelope() {
        let body = r#"{"eventName":"person.created","workspaceId":"ws","webhookId":"wh","eventDate":"d","record":{"id":"r","big":12345678901234567890123,"name":"Zoë \u00e9"}}"#;
        let msgs = messages(&parse(body).unwrap(), RECEIPT, STANDARD).unwrap();
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert_eq!(m.id, "abc");
        assert!(m.fifo.is_none());
        // The record is carried byte for byte: no number rounding, escapes kept.
        assert!(
            m.body.contains(
                r#""record":{"id":"r","big":12345678901234567890123,"name":"Zoë \u00e9"}"#
            )
        );
        let e = envelope(m);
        assert_eq!(e["version"], 1);
        assert_eq!(e["eventName"], "person.created");
        assert_eq!(e["objectName"], "person");
        assert_eq!(e["action"], "created");
        assert_eq!(e["recordId"], "r");
        assert_eq!(e["updatedFields"], serde_json::Value::Null);
        assert_eq!(e["batch"], serde_json::Value::Null);
        assert_eq!(e["signatureVerified"], true);
        assert_eq!(
            m.attributes,
            vec![
                ("eventName", "person.created".to_owned()),
                ("objectName", "person".to_owned()),
                ("action", "created".to_owned()),
                ("workspaceId", "ws".to_owned()),
            ]
        );
    }

    #[test]
    fn batch_becomes_one_message_per_item_with_fifo_ids() {
        let body = r#"{"eventName":"company.updated","workspaceId":"ws","items":[{"record":{"id":"a"},"updatedFields":["name"]},{"record":{"name":"no id"}}]}"#;
        let msgs = messages(&parse(body).unwrap(), RECEIPT, FIFO).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].id, "abc:0");
        assert_eq!(msgs[1].id, "abc:1");
        assert_eq!(
            msgs[0].fifo,
            Some(FifoIds {
                group_id: "company:a".into(),
                deduplication_id: "abc:0".into()
            })
        );
        assert_eq!(msgs[1].fifo.as_ref().unwrap().group_id, "ws");
        let e = envelope(&msgs[0]);
        assert_eq!(e["batch"]["index"], 0);
        assert_eq!(e["batch"]["size"], 2);
        assert_eq!(e["updatedFields"][0], "name");
    }

    #[test]
    fn group_id_is_hashed_when_sqs_would_refuse_it() {
        let long = "x".repeat(200);
        let body = format!(r#"{{"event":"pet.created","data":{{"id":"{long}"}}}}"#);
        let msgs = messages(&parse(&body).unwrap(), RECEIPT, FIFO).unwrap();
        let group = &msgs[0].fifo.as_ref().unwrap().group_id;
        assert_eq!(group.len(), 64);
        let body = r#"{"event":"pet.created","data":{"id":"with space"}}"#;
        let msgs = messages(&parse(body).unwrap(), RECEIPT, FIFO).unwrap();
        assert_eq!(msgs[0].fifo.as_ref().unwrap().group_id.len(), 64);
    }

    #[test]
    fn too_large_and_unsendable_are_refused() {
        let big = "x".repeat(SQS_MAX_MESSAGE_BYTES);
        let body =
            format!(r#"{{"eventName":"note.created","record":{{"id":"1","body":"{big}"}}}}"#);
        assert!(matches!(
            messages(&parse(&body).unwrap(), RECEIPT, STANDARD),
            Err(EnvelopeError::TooLarge { index: 0, .. })
        ));
        let body = r#"{"eventName":"note.created","record":{"id":"1","t":"\uffff"}}"#;
        // Escaped, it stays ASCII in the raw record and is fine ...
        assert!(messages(&parse(body).unwrap(), RECEIPT, STANDARD).is_ok());
        // ... raw, SQS would refuse the message.
        for bad in ['\u{FFFE}', '\u{FFFF}'] {
            let body =
                format!(r#"{{"eventName":"note.created","record":{{"id":"1","t":"{bad}"}}}}"#);
            assert_eq!(
                messages(&parse(&body).unwrap(), RECEIPT, STANDARD),
                Err(EnvelopeError::UnsendableText)
            );
        }
        // Their neighbours in UTF-8 (EF BF BD, EF 80 80) and other non-ASCII text are fine.
        let body = "{\"eventName\":\"note.created\",\"record\":{\"id\":\"1\",\"t\":\"\u{FFFD}\u{F000}Zoë \u{1F600}\u{EF}\"}}";
        assert!(messages(&parse(body).unwrap(), RECEIPT, STANDARD).is_ok());
    }

    #[test]
    fn control_characters_are_refused_in_attributes_only() {
        // In the envelope serde_json escapes them; an attribute carries the text as is, and
        // SQS refuses the whole message for it.
        let body =
            r#"{"eventName":"note.created","workspaceId":"w\u0001s","record":{"id":"1\u0001"}}"#;
        assert_eq!(
            messages(&parse(body).unwrap(), RECEIPT, STANDARD),
            Err(EnvelopeError::UnsendableText)
        );
        let body = r#"{"eventName":"note.created","workspaceId":"w\ts","record":{"id":"1\u0001"}}"#;
        assert!(messages(&parse(body).unwrap(), RECEIPT, STANDARD).is_ok());
    }

    #[test]
    fn with_a_bucket_a_large_envelope_becomes_a_claim_check() {
        let big = "x".repeat(SQS_MAX_MESSAGE_BYTES);
        let body = format!(
            r#"{{"eventName":"note.created","workspaceId":"ws","items":[{{"record":{{"id":"1","body":"{big}"}}}},{{"record":{{"id":"2"}}}}]}}"#
        );
        let to_bucket = Destination {
            fifo: true,
            payload_bucket: Some("payloads"),
        };
        let msgs = messages(&parse(&body).unwrap(), RECEIPT, to_bucket).unwrap();
        assert!(msgs[1].claim.is_none(), "a small item stays inline");
        let m = &msgs[0];
        let claim = m.claim.as_ref().unwrap();
        assert_eq!(claim.bucket, "payloads");
        assert_eq!(claim.key, "twenty-webhook/abc-0.json");
        assert!(m.body.len() < 2_000);
        let pointer = envelope(m);
        assert_eq!(pointer["record"], serde_json::Value::Null);
        assert_eq!(pointer["recordId"], "1");
        assert_eq!(pointer["claimCheck"]["key"], "twenty-webhook/abc-0.json");
        assert_eq!(pointer["claimCheck"]["bytes"], claim.envelope.len());
        assert_eq!(
            pointer["claimCheck"]["sha256"],
            body_sha256(claim.envelope.as_bytes())
        );
        let whole: serde_json::Value = serde_json::from_str(&claim.envelope).unwrap();
        assert_eq!(whole["claimCheck"], serde_json::Value::Null);
        assert_eq!(whole["record"]["body"].as_str().unwrap().len(), big.len());
        assert_eq!(m.fifo.as_ref().unwrap().deduplication_id, "abc:0");
    }

    fn batch(items: usize, metadata_bytes: usize) -> String {
        let item = r#"{"record":{"id":"r","name":"Zoë"},"updatedFields":["name"]}"#;
        format!(
            r#"{{"eventName":"company.updated","objectMetadata":{{"id":"om","pad":"{}"}},"items":[{}]}}"#,
            "m".repeat(metadata_bytes),
            vec![item; items].join(",")
        )
    }

    #[test]
    fn fan_out_is_bounded_before_anything_is_built() {
        let ok = batch(MAX_MESSAGES_PER_DELIVERY, 0);
        let msgs = messages(&parse(&ok).unwrap(), RECEIPT, STANDARD).unwrap();
        assert_eq!(msgs.len(), MAX_MESSAGES_PER_DELIVERY);
        let total: usize = msgs.iter().map(Message::sqs_size).sum();
        let projected = projected_bytes(&parse(&ok).unwrap(), RECEIPT);
        assert!(
            projected >= total,
            "{projected} < {total}: not an upper estimate"
        );

        let many = batch(MAX_MESSAGES_PER_DELIVERY + 1, 0);
        assert_eq!(
            messages(&parse(&many).unwrap(), RECEIPT, STANDARD),
            Err(EnvelopeError::TooManyMessages {
                count: MAX_MESSAGES_PER_DELIVERY + 1
            })
        );
        // The flood the limit is for: a body under 1 MiB whose every item would carry a
        // copy of 40 KiB of objectMetadata (600 items: 24 MiB of messages).
        let flood = batch(600, 40 * 1024);
        assert!(flood.len() < 1024 * 1024);
        assert!(matches!(
            messages(&parse(&flood).unwrap(), RECEIPT, STANDARD),
            Err(EnvelopeError::FanOutTooLarge { bytes }) if bytes > MAX_ENVELOPE_BYTES_PER_DELIVERY
        ));
    }

    #[test]
    fn body_hash_is_sha256_hex() {
        assert_eq!(
            body_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
