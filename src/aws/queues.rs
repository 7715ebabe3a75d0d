//! What a queue holds, read without taking anything from it: its depth (SQS's approximate
//! counts), and for `twenty-admin status` the dead letters counted by destination and
//! reason. Counting has to receive: each message looked at is held for `HOLD` and made
//! visible again at the end, so a redrive running meanwhile only finds it later.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;

use super::lazy::{Source, one_client};
use super::sdk_error::adapter_error;
use super::sqs::attributes_of;
use crate::adapter::AdapterError;
use crate::dead_letter::Census;

/// SQS's approximate counts of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Depth {
    /// Waiting to be received.
    pub visible: u64,
    /// Received and not yet deleted (being handled, or held back for a retry).
    pub in_flight: u64,
    /// Sent with a delay that has not passed.
    pub delayed: u64,
}

/// Looked-at messages stay invisible this long at most, if the release fails.
const HOLD: Duration = Duration::from_secs(30);
/// Counting stops after this long, well within `HOLD`: a message is never counted twice.
const COUNTING: Duration = Duration::from_secs(20);

pub(crate) struct Queues {
    client: Source<Client>,
}

one_client!(Queues, Client);

impl Queues {
    pub(crate) async fn depth(&self, url: &str) -> Result<Depth, AdapterError> {
        depth(self.client.get().await, url).await
    }

    /// Up to `limit` messages of the queue (or as many as `COUNTING` allows) counted with
    /// `Census`, and whether that was all of them. Each is made visible again before this
    /// returns.
    pub(crate) async fn census(
        &self,
        url: &str,
        limit: u64,
    ) -> Result<(Census, bool), AdapterError> {
        let client = self.client.get().await;
        // On FIFO, an empty answer can also mean every group's head is held: all were
        // counted only if as many as the queue held at the start.
        let at_start = if url.ends_with(".fifo") {
            Some(depth(client, url).await?.visible)
        } else {
            None
        };
        let mut census = Census::default();
        let mut held = Vec::new();
        let mut all = false;
        let started = std::time::Instant::now();
        let received = loop {
            if census.counted >= limit || started.elapsed() > COUNTING {
                break Ok(());
            }
            let out = client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                // A long poll asks every SQS server: an empty answer means empty.
                .wait_time_seconds(1)
                .visibility_timeout(HOLD.as_secs() as i32)
                .message_attribute_names("All")
                .send()
                .await;
            let messages = match out {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(e) => break Err(adapter_error("SQS", &e)),
            };
            if messages.is_empty() {
                all = at_start.is_none_or(|n| census.counted >= n);
                break Ok(());
            }
            for m in &messages {
                census.add(&attributes_of(m));
                held.extend(m.receipt_handle().map(str::to_owned));
            }
        };
        release(client, url, &held).await;
        received.map(|()| (census, all))
    }
}

/// The received messages behind `handles` visible again at once, ten a call; if this
/// fails, they come back when the visibility they were received with ends.
pub(crate) async fn release(client: &Client, url: &str, handles: &[String]) {
    let now: Vec<(&str, Duration)> = handles
        .iter()
        .map(|h| (h.as_str(), Duration::ZERO))
        .collect();
    let _ = super::sqs::change_visibility(client, url, &now).await;
}

/// The queue's approximate counts.
pub(crate) async fn depth(client: &Client, url: &str) -> Result<Depth, AdapterError> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|e| adapter_error("SQS", &e))?;
    let count = |name: QueueAttributeName| {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Ok(Depth {
        visible: count(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
    })
}
