//! Moving messages from the dead-letter queue back to the queue (`twenty-replay redrive`),
//! with receive, send and delete: SQS's `StartMessageMoveTask` takes no filter (and moto
//! has none). Each message is sent again with its body, its original attributes (plus
//! `redriven`) and, on FIFO, its group (its deduplication id extended, see below), and
//! deleted from the dead-letter queue only once the queue has its copy. What is not taken
//! is made visible again at the end.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageSystemAttributeName;

use super::dead_letters::send_as_is;
use super::sqs::attributes_of;
use crate::dead_letter::{Attribute, Filter, redriven_attributes};

/// How a redrive went.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RedriveReport {
    /// Sent back and deleted (with `dry_run`: would have been).
    pub moved: u64,
    /// Looked at and left: not matching the filter.
    pub left: u64,
    /// Left: dead-lettered after the redrive started (a message that failed again).
    pub newer: u64,
    /// Message ids and why they could not be moved (they stay in the dead-letter queue).
    pub failed: Vec<(String, String)>,
    /// What the dead-letter queue said it held at the start.
    pub expected: u64,
    /// On a FIFO queue, messages there at the start that could not be looked at: each
    /// waits behind a message of its group that this run leaves (SQS hands out no message
    /// of a group while an earlier one is held).
    pub unexamined: u64,
}

pub(crate) struct Redrive<'a> {
    pub client: &'a Client,
    /// Where claim checks are stored: a claim check sent back has its stored envelope's
    /// lifetime restarted first (the copy lives as long again), and one whose envelope is
    /// gone is left where it is, said. None: sent back as it is.
    pub claims: Option<&'a super::PayloadStore>,
    pub from: &'a str,
    pub to: &'a str,
    pub filter: &'a Filter,
    pub dry_run: bool,
    /// Each message looked at is kept invisible this long while the run goes on (120 s);
    /// a run longer than that receives some again, and looks at each once all the same.
    pub hold: std::time::Duration,
}

impl Redrive<'_> {
    /// Runs it; `progress` is told after each receive. Errs when the queues cannot be read.
    pub(crate) async fn run(
        &self,
        mut progress: impl FnMut(&RedriveReport),
    ) -> Result<RedriveReport, String> {
        let mut report = RedriveReport {
            expected: self.depth().await?,
            ..RedriveReport::default()
        };
        // Only what was there before the start: a message dead-lettered again while this
        // runs (it failed again) is not taken a second time, so a redrive always ends.
        let started_ms = crate::clock::now_ms();
        let filter = Filter {
            until_ms: Some(
                self.filter
                    .until_ms
                    .map_or(started_ms, |u| u.min(started_ms)),
            ),
            ..self.filter.clone()
        };
        let mut held = Vec::new();
        // Each message is looked at once a run: one received again (a run longer than the
        // hold) is only held again, or, if it was sent back and not deleted, deleted now.
        let mut seen = std::collections::HashSet::new();
        let mut undeleted = std::collections::HashSet::new();
        let mut empty = 0;
        // Two answers in a row with nothing new: everything visible has been looked at.
        while empty < 2 {
            let messages = self
                .client
                .receive_message()
                .queue_url(self.from)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .visibility_timeout(self.hold.as_secs().clamp(1, 43_200) as i32)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "receiving from the dead-letter queue: {}",
                        DisplayErrorContext(e)
                    )
                })?
                .messages
                .unwrap_or_default();
            let seen_before = seen.len();
            for m in messages {
                let id = m.message_id().unwrap_or_default().to_owned();
                let handle = m.receipt_handle().unwrap_or_default().to_owned();
                if !seen.insert(id.clone()) {
                    if undeleted.contains(&id) && self.delete(&handle).await.is_ok() {
                        undeleted.remove(&id);
                        report.failed.retain(|(f, _)| *f != id);
                        report.moved += 1;
                    } else {
                        held.push(handle);
                    }
                    continue;
                }
                let attributes = attributes_of(&m);
                let system = m.attributes();
                let system =
                    |name: MessageSystemAttributeName| system.and_then(|s| s.get(&name)).cloned();
                let sent_ms =
                    system(MessageSystemAttributeName::SentTimestamp).and_then(|t| t.parse().ok());
                if sent_ms.is_some_and(|t| t > started_ms) {
                    report.newer += 1;
                    held.push(handle);
                    continue;
                }
                if !filter.matches(&attributes, sent_ms) || self.dry_run {
                    if self.dry_run && filter.matches(&attributes, sent_ms) {
                        report.moved += 1;
                    } else {
                        report.left += 1;
                    }
                    held.push(handle);
                    continue;
                }
                if let Err(why) = self.refresh_claim(m.body().unwrap_or_default()).await {
                    report.failed.push((id, why));
                    held.push(handle);
                    continue;
                }
                let sent = self
                    .send_back(
                        m.body().unwrap_or_default(),
                        &redriven_attributes(&attributes),
                        system(MessageSystemAttributeName::MessageGroupId),
                        system(MessageSystemAttributeName::MessageDeduplicationId)
                            .map(|d| redrive_deduplication_id(&d, &id)),
                    )
                    .await;
                if let Err(e) = sent {
                    report.failed.push((id, e));
                    held.push(handle);
                    continue;
                }
                // Only now: the queue has its copy.
                match self.delete(&handle).await {
                    Ok(()) => report.moved += 1,
                    Err(e) => {
                        undeleted.insert(id.clone());
                        report.failed.push((
                            id,
                            format!("sent back, but not deleted from the dead-letter queue (it will be redriven twice if run again): {e}"),
                        ));
                    }
                }
            }
            empty = if seen.len() == seen_before {
                empty + 1
            } else {
                0
            };
            progress(&report);
        }
        super::queues::release(self.client, self.from, &held).await;
        if self.from.ends_with(".fifo") {
            let examined = (seen.len() as u64).saturating_sub(report.newer);
            report.unexamined = report.expected.saturating_sub(examined);
        }
        Ok(report)
    }

    async fn delete(&self, handle: &str) -> Result<(), String> {
        self.client
            .delete_message()
            .queue_url(self.from)
            .receipt_handle(handle)
            .send()
            .await
            .map(drop)
            .map_err(|e| DisplayErrorContext(e).to_string())
    }

    /// A claim check's stored envelope, its lifetime restarted; Err when it cannot be
    /// (gone: the message is not sent back to fail for good).
    async fn refresh_claim(&self, body: &str) -> Result<(), String> {
        let (Some(claims), Some(check)) = (self.claims, super::s3::claim_of(body)) else {
            return Ok(());
        };
        claims
            .refresh(&check.bucket, &check.key)
            .await
            .map_err(|e| {
                format!(
                    "its stored envelope s3://{}/{}: {}",
                    check.bucket,
                    check.key,
                    e.reason()
                )
            })
    }

    async fn depth(&self) -> Result<u64, String> {
        super::queues::depth(self.client, self.from)
            .await
            .map(|d| d.visible)
            .map_err(|e| format!("reading the dead-letter queue: {e}"))
    }

    async fn send_back(
        &self,
        body: &str,
        attributes: &[Attribute],
        group_id: Option<String>,
        deduplication_id: Option<String>,
    ) -> Result<(), String> {
        let fifo = (group_id, deduplication_id);
        send_as_is(self.client, self.to, body, attributes, fifo)
            .await
            .map_err(|e| e.to_string())
    }
}

/// On a FIFO queue, a copy with the first sending's deduplication id would be dropped
/// within five minutes of it, silently: the redrive's id is made of the dead-lettered
/// message's own and the id it carries, hashed (never cut, so the third redrive of one
/// event differs from the second). The only copy SQS can then drop is one of the same
/// dead-lettered message sent before (a run whose delete failed): the queue has it
/// already, so deleting it from the dead-letter queue loses nothing.
fn redrive_deduplication_id(original: &str, dead_letter_id: &str) -> String {
    crate::dead_letter::copy_deduplication_id(&[original, dead_letter_id])
}
