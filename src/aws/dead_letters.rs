//! The dead-letter queue as the worker fills it: a message moved by `SendMessage`, body,
//! attributes and FIFO ids as they were (`worker::dead_letter` says what is added).

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageAttributeValue;

use super::lazy::{LazySdk, Source};
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
pub(crate) fn attribute_value(a: &Attribute) -> Result<MessageAttributeValue, String> {
    let mut value = MessageAttributeValue::builder().data_type(&a.data_type);
    if let Some(text) = &a.string {
        value = value.string_value(text);
    }
    if let Some(bytes) = &a.binary {
        value = value.binary_value(aws_sdk_sqs::primitives::Blob::new(bytes.clone()));
    }
    value.build().map_err(|e| e.to_string())
}

impl DeadLetters for SqsDeadLetters {
    fn send<'a>(&'a self, letter: &'a DeadLetter) -> SendFuture<'a> {
        Box::pin(async move {
            let attributes = letter
                .attributes
                .iter()
                .map(|a| Ok((a.name.clone(), attribute_value(a)?)))
                .collect::<Result<HashMap<_, _>, String>>()?;
            self.client
                .get()
                .await
                .send_message()
                .queue_url(&self.url)
                .message_body(&letter.body)
                .set_message_attributes(Some(attributes))
                .set_message_group_id(letter.group_id.clone())
                .set_message_deduplication_id(letter.deduplication_id.clone())
                .send()
                .await
                .map(drop)
                .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
        })
    }
}
