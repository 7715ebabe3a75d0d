//! The dead-letter queue as the worker fills it: a message moved by `SendMessage`, body,
//! attributes and FIFO group as they were, with the copy's own deduplication id
//! (`crate::dead_letter` says what is added).

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageAttributeValue;

use super::lazy::{LazySdk, Source};
use super::sdk_error::adapter_error;
use crate::adapter::AdapterError;
use crate::dead_letter::{Attribute, DeadLetter, DeadLetters, SendFuture};

/// Sends messages to the dead-letter queue as the worker moves them.
pub struct SqsDeadLetters {
    client: Source<Client>,
    url: String,
}

impl SqsDeadLetters {
    pub fn with_sdk_config(shared: &SdkConfig, url: &str) -> Self {
        Self {
            client: Source::Ready(Client::new(shared)),
            url: url.to_owned(),
        }
    }

    /// The client is made when the first message is moved.
    pub fn lazy(sdk: LazySdk, url: &str) -> Self {
        Self {
            client: Source::lazy(sdk, Client::new),
            url: url.to_owned(),
        }
    }
}

/// A message attribute for SQS.
fn attribute_value(a: &Attribute) -> Result<MessageAttributeValue, AdapterError> {
    let mut value = MessageAttributeValue::builder().data_type(&a.data_type);
    if let Some(text) = &a.string {
        value = value.string_value(text);
    }
    if let Some(bytes) = &a.binary {
        value = value.binary_value(aws_sdk_sqs::primitives::Blob::new(bytes.clone()));
    }
    value
        .build()
        .map_err(|e| AdapterError::Refused(format!("attribute {}: {e}", a.name)))
}

/// Sends `body` to `queue_url` with its attributes and FIFO ids as they are: how a message
/// moves to the dead-letter queue, and back by a redrive.
pub(crate) async fn send_as_is(
    client: &Client,
    queue_url: &str,
    body: &str,
    attributes: &[Attribute],
    fifo: (Option<String>, Option<String>),
) -> Result<(), AdapterError> {
    let attributes = attributes
        .iter()
        .map(|a| Ok((a.name.clone(), attribute_value(a)?)))
        .collect::<Result<HashMap<_, _>, AdapterError>>()?;
    let (group_id, deduplication_id) = fifo;
    client
        .send_message()
        .queue_url(queue_url)
        .message_body(body)
        .set_message_attributes(Some(attributes))
        .set_message_group_id(group_id)
        .set_message_deduplication_id(deduplication_id)
        .send()
        .await
        .map(drop)
        .map_err(|e| adapter_error("SQS", &e))
}

impl DeadLetters for SqsDeadLetters {
    fn send<'a>(&'a self, letter: &'a DeadLetter) -> SendFuture<'a> {
        Box::pin(async move {
            let fifo = (letter.group_id.clone(), letter.deduplication_id.clone());
            let client = self.client.get().await;
            send_as_is(client, &self.url, &letter.body, &letter.attributes, fifo).await
        })
    }
}
