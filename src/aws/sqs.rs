//! The SQS adapter: one SendMessageBatch call per batch, its answer passed on as it came.
//! Retries, claim-check order and the fallback log are the delivery logic's (`delivery`).

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, MessageAttributeValue, SendMessageBatchRequestEntry,
};

#[cfg(feature = "worker")]
use super::lazy::one_client;
use super::lazy::{LazySdk, Source};
use super::s3::PayloadStore;
use super::sdk_error::adapter_error;
use crate::adapter::{AdapterError, Attempt, classify};
use crate::delivery::{BatchReply, Entry, EntryRefusal, Transport, send::ATTEMPT_TIMEOUT};
use crate::envelope::{Claim, Message};

pub struct SqsTransport {
    client: Client,
    url: String,
    store: Option<PayloadStore>,
}

impl SqsTransport {
    /// Builds the clients from the standard AWS settings (`AWS_ENDPOINT_URL_SQS` included).
    /// No call goes out until the first send.
    pub async fn connect(queue_url: &str) -> Self {
        let shared = aws_config::load_from_env().await;
        Self::with_sdk_config(&shared, queue_url)
            .with_payload_store(PayloadStore::with_sdk_config(&shared))
    }

    pub fn with_sdk_config(shared: &SdkConfig, queue_url: &str) -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(1))
            .operation_timeout(ATTEMPT_TIMEOUT)
            .build();
        let sqs = aws_sdk_sqs::config::Builder::from(shared)
            .timeout_config(timeouts)
            // Retries are the delivery logic's, bounded by the time budget, not the SDK's.
            .retry_config(RetryConfig::disabled())
            .build();
        Self {
            client: Client::from_conf(sqs),
            url: queue_url.to_owned(),
            store: None,
        }
    }

    /// Needed to send messages whose envelope is bound for S3 (`Message::claim`).
    pub fn with_payload_store(mut self, store: PayloadStore) -> Self {
        self.store = Some(store);
        self
    }
}

impl Transport for SqsTransport {
    async fn send_batch(&self, entries: &[Entry<'_>]) -> Result<BatchReply, AdapterError> {
        let entries = entries
            .iter()
            .map(|e| entry(e.id, e.message))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| classify(Attempt::NotSent, format!("building the request: {e}")))?;
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| adapter_error("SQS", &e))?;
        Ok(BatchReply {
            successful: output
                .successful()
                .iter()
                .map(|s| s.id().to_owned())
                .collect(),
            failed: output
                .failed()
                .iter()
                .map(|f| EntryRefusal {
                    id: f.id().to_owned(),
                    sender_fault: f.sender_fault(),
                    code: f.code().to_owned(),
                })
                .collect(),
        })
    }

    async fn put_claim(&self, claim: &Claim) -> Result<(), AdapterError> {
        match &self.store {
            Some(store) => store.put(claim).await,
            None => Err(AdapterError::Refused("no payload store configured".into())),
        }
    }
}

fn entry(
    id: &str,
    message: &Message,
) -> Result<SendMessageBatchRequestEntry, aws_sdk_sqs::error::BuildError> {
    let attributes = message
        .attributes
        .iter()
        .map(|(name, value)| {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()?;
            Ok(((*name).to_owned(), value))
        })
        .collect::<Result<HashMap<_, _>, aws_sdk_sqs::error::BuildError>>()?;
    SendMessageBatchRequestEntry::builder()
        .id(id)
        .message_body(&message.body)
        .set_message_attributes(Some(attributes))
        .set_message_group_id(message.fifo.as_ref().map(|f| f.group_id.clone()))
        .set_message_deduplication_id(message.fifo.as_ref().map(|f| f.deduplication_id.clone()))
        .build()
}

/// Changes the visibility of a received message: how a worker delays the next delivery of
/// a message that failed.
pub struct SqsVisibility {
    client: Source<Client>,
    /// The queue's URL when it is known; otherwise it is derived from the event source ARN.
    queue_url: Option<String>,
}

impl SqsVisibility {
    pub fn with_sdk_config(shared: &SdkConfig, queue_url: Option<String>) -> Self {
        Self {
            client: Source::Ready(Client::new(shared)),
            queue_url,
        }
    }

    /// The client is made when the first visibility is changed.
    pub fn lazy(sdk: LazySdk, queue_url: Option<String>) -> Self {
        Self {
            client: Source::lazy(sdk, Client::new),
            queue_url,
        }
    }

    /// The message comes back after `delay` (at most SQS's 12 hours).
    pub async fn delay(
        &self,
        event_source_arn: Option<&str>,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), AdapterError> {
        self.delay_many(event_source_arn, &[(receipt_handle, delay)])
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    /// Each message comes back after its delay: one call per ten messages. One result per
    /// message, in order.
    pub async fn delay_many(
        &self,
        event_source_arn: Option<&str>,
        messages: &[(&str, Duration)],
    ) -> Vec<Result<(), AdapterError>> {
        let url = match &self.queue_url {
            Some(url) => url.clone(),
            None => match event_source_arn.and_then(queue_url_of) {
                Some(url) => url,
                None => {
                    let why = "no queue URL, and none in the event source ARN";
                    let why = AdapterError::NotFound(why.into());
                    return messages.iter().map(|_| Err(why.clone())).collect();
                }
            },
        };
        change_visibility(self.client.get().await, &url, messages).await
    }
}

/// Each message of `url` comes back after its delay: one call per ten messages. One result
/// per message, in order.
pub(crate) async fn change_visibility(
    client: &Client,
    url: &str,
    messages: &[(&str, Duration)],
) -> Vec<Result<(), AdapterError>> {
    let mut results = Vec::with_capacity(messages.len());
    for chunk in messages.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, (handle, delay))| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*handle)
                    .visibility_timeout(visibility_seconds(*delay))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>();
        let sent = match entries {
            Ok(entries) => client
                .change_message_visibility_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| adapter_error("SQS", &e)),
            Err(e) => Err(AdapterError::Refused(e.to_string())),
        };
        match sent {
            Ok(out) => results.extend((0..chunk.len()).map(|i| {
                match out.failed().iter().find(|f| f.id() == i.to_string()) {
                    Some(f) => {
                        let detail = format!("SQS: {}: {}", f.code(), f.message().unwrap_or(""));
                        let status = if f.sender_fault() { 400 } else { 500 };
                        Err(classify(
                            Attempt::Answer {
                                status,
                                code: Some(f.code()),
                            },
                            detail,
                        ))
                    }
                    None => Ok(()),
                }
            })),
            Err(e) => results.extend(chunk.iter().map(|_| Err(e.clone()))),
        }
    }
    results
}

/// A delay as SQS's whole seconds, rounded up (a message never comes back early), at most
/// 12 hours.
fn visibility_seconds(delay: Duration) -> i32 {
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    seconds.min(43_200) as i32
}

/// `arn:aws:sqs:<region>:<account>:<name>` to `https://sqs.<region>.amazonaws.com/<account>/<name>`.
pub(crate) fn queue_url_of(arn: &str) -> Option<String> {
    let mut parts = arn.split(':');
    let (Some("arn"), Some(partition), Some("sqs"), Some(region), Some(account), Some(name), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let domain = if partition == "aws-cn" {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    Some(format!("https://sqs.{region}.{domain}/{account}/{name}"))
}

/// Sends messages for SQS targets, as they are (attributes and FIFO ids kept).
#[cfg(feature = "worker")]
pub struct SqsSender {
    client: Source<Client>,
}

#[cfg(feature = "worker")]
one_client!(SqsSender, Client);

#[cfg(feature = "worker")]
impl crate::worker::targets::queue::QueueSender for SqsSender {
    fn send<'a>(
        &'a self,
        queue_url: &'a str,
        message: crate::worker::targets::queue::QueueMessage<'a>,
        timeout: Duration,
    ) -> crate::adapter::AdapterFuture<'a, ()> {
        Box::pin(async move {
            let fifo = (
                message.group_id.map(str::to_owned),
                message.deduplication_id.map(str::to_owned),
            );
            let client = self.client.get().await;
            let send = super::dead_letters::send_as_is(
                client,
                queue_url,
                message.body,
                message.attributes,
                fifo,
            );
            tokio::time::timeout(timeout, send)
                .await
                .unwrap_or_else(|_| {
                    Err(AdapterError::Unavailable(format!(
                        "SQS: no answer within {} ms",
                        timeout.as_millis()
                    )))
                })
        })
    }
}

/// A received message's attributes, as a dead-letter copy or a redrive sends them again.
pub(crate) fn attributes_of(m: &aws_sdk_sqs::types::Message) -> Vec<crate::dead_letter::Attribute> {
    m.message_attributes()
        .map(|a| {
            a.iter()
                .map(|(name, v)| crate::dead_letter::Attribute {
                    name: name.clone(),
                    data_type: v.data_type().to_owned(),
                    string: v.string_value().map(str::to_owned),
                    binary: v.binary_value().map(|b| b.as_ref().to_vec()),
                })
                .collect()
        })
        .unwrap_or_default()
}
