//! The SQS adapter: sends finished messages, and keeps what it could not send.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use lambda_http::tracing::{error, info};
use thiserror::Error;

use crate::config::{AckMode, Config};
use crate::envelope::{Message, SQS_MAX_MESSAGE_BYTES};

/// SQS takes at most ten messages in one batch call.
const MAX_BATCH_ENTRIES: usize = 10;

#[derive(Debug, Error)]
#[error("{failed} of {total} messages not queued: {reason}")]
pub struct QueueError {
    pub failed: usize,
    pub total: usize,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// Builds the client from the standard AWS settings (`AWS_ENDPOINT_URL_SQS` included).
    /// No call goes out until the first send.
    pub async fn connect(config: &Config) -> Self {
        Self::with_sdk_config(&aws_config::load_from_env().await, config)
    }

    pub fn with_sdk_config(shared: &SdkConfig, config: &Config) -> Self {
        // After-enqueue must answer inside Twenty's 5 s timeout; immediate mode has time.
        let (attempt, total) = match config.ack_mode {
            AckMode::AfterEnqueue => (Duration::from_secs(2), Duration::from_millis(4_000)),
            AckMode::Immediate => (Duration::from_secs(5), Duration::from_secs(20)),
        };
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(1))
            .operation_attempt_timeout(attempt)
            .operation_timeout(total)
            .build();
        let sqs = aws_sdk_sqs::config::Builder::from(shared)
            .timeout_config(timeouts)
            .build();
        Self {
            client: Client::from_conf(sqs),
            url: config.queue_url.clone(),
        }
    }

    /// Sends every message, in order. What could not be sent is written to the log as an
    /// `undelivered` line holding the whole envelope, so that an acknowledged event is never
    /// simply gone.
    pub async fn deliver(&self, messages: Vec<Message>) -> Result<(), QueueError> {
        let total = messages.len();
        let mut undelivered = Vec::new();
        let mut reason = String::new();
        for chunk in chunks(&messages) {
            if let Err(why) = self.send_batch(chunk, &mut undelivered).await {
                undelivered.extend(chunk.iter());
                reason = why;
            }
        }
        if undelivered.is_empty() {
            info!(messages = total, "queued");
            return Ok(());
        }
        if reason.is_empty() {
            reason = "SQS refused some entries".into();
        }
        for message in &undelivered {
            error!(
                undelivered = true,
                id = %message.id,
                reason = %reason,
                envelope = %message.body,
                "event acknowledged but not queued"
            );
        }
        Err(QueueError {
            failed: undelivered.len(),
            total,
            reason,
        })
    }

    /// One SendMessageBatch call. Entries SQS refused one by one go to `refused`; an error
    /// for the whole call is returned.
    async fn send_batch<'m>(
        &self,
        chunk: &'m [Message],
        refused: &mut Vec<&'m Message>,
    ) -> Result<(), String> {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| entry(i, m))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("building the request: {e}"))?;
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        for failed in output.failed() {
            let index = failed.id().parse::<usize>().ok();
            if let Some(message) = index.and_then(|i| chunk.get(i)) {
                error!(id = %message.id, code = failed.code(), "SQS refused a message");
                refused.push(message);
            }
        }
        Ok(())
    }
}

fn entry(
    index: usize,
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
        .id(index.to_string())
        .message_body(&message.body)
        .set_message_attributes(Some(attributes))
        .set_message_group_id(message.fifo.as_ref().map(|f| f.group_id.clone()))
        .set_message_deduplication_id(message.fifo.as_ref().map(|f| f.deduplication_id.clone()))
        .build()
}

/// Splits into batch calls of at most ten entries and at most the SQS payload limit.
fn chunks(messages: &[Message]) -> Vec<&[Message]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, message) in messages.iter().enumerate() {
        let m = message.sqs_size();
        if i > start && (i - start == MAX_BATCH_ENTRIES || size + m > SQS_MAX_MESSAGE_BYTES) {
            out.push(&messages[start..i]);
            (start, size) = (i, 0);
        }
        size += m;
    }
    if start < messages.len() {
        out.push(&messages[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(size: usize) -> Message {
        Message {
            id: "x".into(),
            body: "b".repeat(size),
            attributes: vec![],
            fifo: None,
        }
    }

    #[test]
    fn chunks_respect_count_and_size() {
        let lens = |ms: &[Message]| chunks(ms).iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(lens(&[]), Vec::<usize>::new());
        assert_eq!(lens(&vec![message(10); 23]), [10, 10, 3]);
        let half = SQS_MAX_MESSAGE_BYTES / 2;
        assert_eq!(lens(&vec![message(half); 3]), [2, 1]);
        assert_eq!(lens(&vec![message(half + 1); 3]), [1, 1, 1]);
    }
}
