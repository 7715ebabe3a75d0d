//! EventBridge, for event-bus targets: one `PutEvents` call per gathered batch, with a
//! result per entry.

use std::time::Duration;

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::lazy::{Source, one_client};
use super::sdk_error::adapter_error;
use crate::adapter::{AdapterError, AdapterFuture, Attempt, classify};
use crate::worker::targets::event_bus::{BusEntry, Publisher};

pub struct EventBridgePublisher {
    client: Source<Client>,
}

one_client!(EventBridgePublisher, Client);

impl Publisher for EventBridgePublisher {
    fn put<'a>(
        &'a self,
        entries: &'a [BusEntry],
        timeout: Duration,
    ) -> AdapterFuture<'a, Vec<Result<(), AdapterError>>> {
        Box::pin(async move {
            let request: Vec<PutEventsRequestEntry> = entries
                .iter()
                .map(|e| {
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&e.bus)
                        .source(&e.source)
                        .detail_type(&e.detail_type)
                        .detail(&e.detail)
                        .build()
                })
                .collect();
            let call = self
                .client
                .get()
                .await
                .put_events()
                .set_entries(Some(request))
                .send();
            let out = match tokio::time::timeout(timeout, call).await {
                Err(_) => {
                    return Err(AdapterError::Unavailable(format!(
                        "EventBridge: no answer within {} ms",
                        timeout.as_millis()
                    )));
                }
                Ok(result) => result.map_err(|e| adapter_error("EventBridge", &e))?,
            };
            let results = out.entries();
            Ok((0..entries.len())
                .map(|i| match results.get(i) {
                    Some(r) if r.error_code().is_none() => Ok(()),
                    Some(r) => {
                        let code = r.error_code().unwrap_or("");
                        let detail =
                            format!("EventBridge: {code}: {}", r.error_message().unwrap_or(""));
                        // Entry errors carry a code, no status: read them by the code.
                        let status = if code.contains("InternalFailure") {
                            500
                        } else {
                            400
                        };
                        Err(classify(
                            Attempt::Answer {
                                status,
                                code: Some(code),
                            },
                            detail,
                        ))
                    }
                    None => Err(AdapterError::Unavailable(
                        "EventBridge: no result for this entry".into(),
                    )),
                })
                .collect())
        })
    }
}
