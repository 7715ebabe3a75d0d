//! Hostile and broken requests through the whole handler, against moto's SQS: each gets its
//! precise status and a JSON error, and nothing reaches the queue.

mod support;

use support::*;
use twenty_webhook::ingest::config::AckMode;

/// Signed headers for `body`, then `edit` applied to them (raw bytes, so values may be
/// anything a client can send).
fn headers_for(
    body: &[u8],
    edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>),
) -> Vec<(String, Vec<u8>)> {
    let ts = now_ms();
    let sig = twenty_webhook::twenty::signature::sign(SECRET.as_bytes(), &ts, body);
    let mut headers = vec![
        ("content-type".to_owned(), b"application/json".to_vec()),
        ("x-twenty-webhook-timestamp".to_owned(), ts.into_bytes()),
        ("x-twenty-webhook-signature".to_owned(), sig.into_bytes()),
    ];
    edit(&mut headers);
    headers
}

fn raw_request(headers: &[(String, Vec<u8>)], body: Vec<u8>) -> lambda_http::Request {
    let mut builder = lambda_http::http::Request::builder()
        .method("POST")
        .uri("https://abc.lambda-url.eu-west-1.on.aws/");
    for (name, value) in headers {
        let value = lambda_http::http::HeaderValue::from_bytes(value).expect("a header value");
        builder = builder.header(name.as_str(), value);
    }
    builder.body(lambda_http::Body::Binary(body)).unwrap()
}

fn set(headers: &mut Vec<(String, Vec<u8>)>, name: &str, value: &[u8]) {
    headers.retain(|(n, _)| n != name);
    headers.push((name.to_owned(), value.to_vec()));
}

#[tokio::test]
async fn each_hostile_request_gets_its_status_and_nothing_is_queued() {
    let h = Harness::new(false, AckMode::Immediate).await;
    let good = person_created("hostile").into_bytes();
    let nested = format!(
        r#"{{"eventName":"person.created","record":{{"id":"1","x":{}1{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    )
    .into_bytes();
    let not_utf8 = {
        let mut b = person_created("bytes").into_bytes();
        let at = b.len() - 10;
        b[at] = 0xff;
        b
    };

    type Edit = Box<dyn FnOnce(&mut Vec<(String, Vec<u8>)>)>;
    let cases: Vec<(&str, Vec<u8>, Edit, u16, &str)> = vec![
        (
            "signature header twice",
            good.clone(),
            Box::new(|h| {
                let sig = h
                    .iter()
                    .find(|(n, _)| n == "x-twenty-webhook-signature")
                    .unwrap()
                    .clone();
                h.push(sig);
            }),
            400,
            "repeated_header",
        ),
        (
            "content type twice",
            good.clone(),
            Box::new(|h| h.push(("content-type".into(), b"application/json".to_vec()))),
            400,
            "repeated_header",
        ),
        (
            "signature 8 KiB long",
            good.clone(),
            Box::new(|h| set(h, "x-twenty-webhook-signature", &[b'a'; 8192])),
            401,
            "invalid_signature",
        ),
        (
            "timestamp 8 KiB long",
            good.clone(),
            Box::new(|h| set(h, "x-twenty-webhook-timestamp", &[b'1'; 8192])),
            401,
            "invalid_signature",
        ),
        (
            "signature not UTF-8",
            good.clone(),
            Box::new(|h| set(h, "x-twenty-webhook-signature", &[0xe9; 64])),
            401,
            "invalid_signature",
        ),
        (
            "timestamp not UTF-8",
            good.clone(),
            Box::new(|h| set(h, "x-twenty-webhook-timestamp", b"17\xff9")),
            401,
            "invalid_signature",
        ),
        (
            "content type not UTF-8",
            good.clone(),
            Box::new(|h| set(h, "content-type", b"application/\xe9json")),
            415,
            "unsupported_media_type",
        ),
        (
            "empty body, signed",
            Vec::new(),
            Box::new(|_| {}),
            400,
            "not_a_twenty_event",
        ),
        (
            "truncated body, signed",
            good[..good.len() / 2].to_vec(),
            Box::new(|_| {}),
            400,
            "malformed_json",
        ),
        (
            "nested 10,000 deep, signed",
            nested,
            Box::new(|_| {}),
            400,
            "malformed_json",
        ),
        (
            "body not UTF-8, signed",
            not_utf8,
            Box::new(|_| {}),
            400,
            "malformed_json",
        ),
    ];
    for (what, body, edit, status, code) in cases {
        let headers = headers_for(&body, edit);
        let (got, json) = h.handle(raw_request(&headers, body)).await;
        assert_eq!(got, status, "{what}: {json}");
        assert_eq!(json["error"], code, "{what}");
    }

    // Header names in any case are the same header (HTTP/1.1 clients send them so).
    let mixed: Vec<(String, Vec<u8>)> = headers_for(&good, |_| {})
        .into_iter()
        .map(|(n, v)| (n.to_ascii_uppercase(), v))
        .collect();
    let (status, json) = h.handle(raw_request(&mixed, good.clone())).await;
    assert_eq!(status, 200, "{json}");
    let queued = h.queued().await;
    assert_eq!(queued.len(), 1, "only the well-formed request was queued");
    assert_eq!(envelope(&queued[0])["recordId"], "hostile");
}
