//! The test delivery: a `person.updated` event as Twenty sends it (its `record` marked as a
//! test), signed with the webhook's secret as Twenty signs, POSTed to the Function URL.

use std::time::{Duration, SystemTime};

use crate::twenty::signature;
use crate::twenty::signature::{NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// What the Function URL answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: u16,
    /// The start of the body (the ingest function answers with a short JSON).
    pub body: String,
}

impl Answer {
    pub(crate) fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The sample body: a person.updated whose record says it is a test.
pub(crate) fn body(target_url: &str, now: SystemTime) -> String {
    let at = humantime::format_rfc3339_millis(now).to_string();
    serde_json::json!({
        "targetUrl": target_url,
        "eventName": "person.updated",
        "objectMetadata": {"id": "00000000-0000-4000-8000-000000000001", "nameSingular": "person"},
        "workspaceId": "00000000-0000-4000-8000-000000000000",
        "webhookId": "00000000-0000-4000-8000-000000000002",
        "eventDate": at,
        "record": {
            "id": "00000000-0000-4000-8000-00000000test",
            "name": {"firstName": "Twenty-admin", "lastName": "Test"},
            "twentyAdminTest": true,
            "createdAt": at, "updatedAt": at, "deletedAt": null
        },
        "updatedFields": ["name"]
    })
    .to_string()
}

/// Signs and sends the sample to `url` (the token, if any, is part of it).
pub(crate) async fn send(url: &str, secret: &str, timeout: Duration) -> Result<Answer, String> {
    crate::tls::install_provider();
    let now = SystemTime::now();
    let body = body(url, now);
    let timestamp = crate::clock::millis(now).to_string();
    let signature = signature::sign(secret.as_bytes(), &timestamp, body.as_bytes());
    let nonce = crate::admin::new_secret()?;
    let answer = reqwest::Client::new()
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, &timestamp)
        .header(SIGNATURE_HEADER, signature)
        .header(NONCE_HEADER, &nonce[..32])
        .body(body)
        .send()
        .await
        .map_err(|e| format!("the webhook URL could not be reached: {}", e.without_url()))?;
    let status = answer.status().as_u16();
    let body: String = answer
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    Ok(Answer { status, body })
}
