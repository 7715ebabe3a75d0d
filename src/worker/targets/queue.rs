//! SQS targets: `SendMessage` of the envelope bytes with the message attributes it was
//! queued with, and, for a FIFO queue, the group it came with (from a standard queue, the
//! record's) and the envelope's id as deduplication id.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{Clients, DeliverFuture, Delivery, Kind, Target, TargetSpec, failed, text, within};
use crate::adapter::AdapterFuture;
use crate::dead_letter::Attribute;
use crate::worker::web::valid_url;

/// `queueUrl`.
pub(crate) static KIND: Kind = Kind {
    key: "queueUrl",
    fields: &[],
    parse,
};

/// A rule's queue; FIFO when its URL ends in `.fifo`.
#[derive(Debug, Clone)]
pub(crate) struct QueueTarget {
    pub url: String,
    pub fifo: bool,
}

fn parse(map: &Map<String, Value>) -> Result<Arc<dyn TargetSpec>, String> {
    let url = text(map, "queueUrl");
    if !valid_url(url) {
        return Err("`queueUrl` must be an SQS queue's https:// URL".to_owned());
    }
    Ok(Arc::new(QueueTarget {
        url: url.to_owned(),
        fifo: url.trim_end_matches('/').ends_with(".fifo"),
    }))
}

impl TargetSpec for QueueTarget {
    fn build(&self, clients: &Clients) -> Result<Arc<dyn Target>, &'static str> {
        Ok(Arc::new(Queue {
            sender: clients.get::<dyn QueueSender>().ok_or("SQS")?,
            url: self.url.clone(),
            fifo: self.fifo,
        }))
    }
}

/// SQS takes messages of at most 1 MiB (attributes included; the envelope's are small).
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024 - 16 * 1024;

/// One message for a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueMessage<'a> {
    pub body: &'a str,
    pub attributes: &'a [Attribute],
    pub group_id: Option<&'a str>,
    pub deduplication_id: Option<&'a str>,
}

/// Sends messages (`crate::aws::SqsSender`).
pub(crate) trait QueueSender: Send + Sync + 'static {
    fn send<'a>(
        &'a self,
        queue_url: &'a str,
        message: QueueMessage<'a>,
        timeout: Duration,
    ) -> AdapterFuture<'a, ()>;
}

pub(crate) struct Queue {
    pub sender: Arc<dyn QueueSender>,
    pub url: String,
    pub fifo: bool,
}

impl Target for Queue {
    fn deliver(&self, delivery: Delivery) -> DeliverFuture<'_> {
        Box::pin(async move {
            let event = &delivery.event;
            let Some(body) = within(&delivery, MAX_BODY_BYTES) else {
                return Err(crate::worker::error::HandlerError::permanent(
                    "the body is over SQS's 1 MiB (an envelope not queued as a claim check, or a transformed body)",
                ));
            };
            let received = event.received.as_deref();
            let fallback_group;
            let (group_id, deduplication_id) = if self.fifo {
                let group = match received.and_then(|r| r.group_id.as_deref()) {
                    Some(g) => g,
                    None => {
                        fallback_group = format!(
                            "{}:{}",
                            event.object_name,
                            event.record_id.as_deref().unwrap_or(&event.id)
                        );
                        &fallback_group
                    }
                };
                // The envelope's id, never the received message's: a dead-letter copy or a
                // redrive carries an id of its own, and the target must still see one event
                // under one id.
                (Some(group), Some(event.id.as_str()))
            } else {
                (None, None)
            };
            let message = QueueMessage {
                body,
                attributes: received.map_or(&[], |r| r.attributes.as_slice()),
                group_id,
                deduplication_id,
            };
            self.sender
                .send(&self.url, message, delivery.timeout)
                .await
                .map_err(|e| failed("SQS", &e, delivery.retry_all_errors))
        })
    }
}
