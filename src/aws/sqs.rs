//! The SQS adapter: sends finished messages under the retry policy, and writes what it
//! could not send to the fallback log.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use lambda_http::tracing::{error, info, warn};
use thiserror::Error;
use tokio::time::Instant;

use crate::envelope::{Message, SQS_MAX_MESSAGE_BYTES};
use crate::fallback;
use crate::payload_store::PayloadStore;
use crate::retry::{Attempt, Backoff, Failure, classify, jitter_unit};

/// SQS takes at most ten messages in one batch call.
const MAX_BATCH_ENTRIES: usize = 10;
/// One call gets at most this long; a slow answer is a failed attempt, retried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(2_500);
/// A retry is not started with less time than this left: it could not finish.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);

#[derive(Debug, Error)]
#[error("{failed} of {total} messages not queued: {reason}")]
pub struct QueueError {
    pub failed: usize,
    pub total: usize,
    pub reason: String,
}

/// What became of a set of messages.
#[derive(Debug, Default)]
pub struct Outcome {
    pub queued: usize,
    pub undelivered: Vec<(Message, Failure)>,
    pub attempts: u32,
}

/// Where undelivered lines go: standard output (CloudWatch Logs) unless a test says otherwise.
pub type FallbackSink = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    backoff: Backoff,
    fallback: FallbackSink,
    store: Option<PayloadStore>,
}

impl SqsQueue {
    /// Builds the client from the standard AWS settings (`AWS_ENDPOINT_URL_SQS` included).
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
            // Retries are ours (`send_all`), bounded by the time budget, not the SDK's.
            .retry_config(RetryConfig::disabled())
            .build();
        Self {
            client: Client::from_conf(sqs),
            url: queue_url.to_owned(),
            backoff: Backoff::default(),
            fallback: Arc::new(write_stdout),
            store: None,
        }
    }

    /// Needed to send messages whose envelope is bound for S3 (`Message::claim`).
    pub fn with_payload_store(mut self, store: PayloadStore) -> Self {
        self.store = Some(store);
        self
    }

    pub fn with_fallback_sink(mut self, sink: FallbackSink) -> Self {
        self.fallback = sink;
        self
    }

    /// Sends every message before `deadline`; what SQS still has not taken by then is
    /// written to the fallback log. Errs if anything went to the fallback.
    pub async fn deliver(
        &self,
        messages: Vec<Message>,
        deadline: Instant,
    ) -> Result<(), QueueError> {
        let total = messages.len();
        let outcome = self.send_all(messages, deadline).await;
        if outcome.undelivered.is_empty() {
            info!(messages = total, attempts = outcome.attempts, "queued");
            return Ok(());
        }
        let reason = outcome.undelivered[0].1.reason().to_owned();
        self.write_fallback(&outcome.undelivered);
        Err(QueueError {
            failed: outcome.undelivered.len(),
            total,
            reason,
        })
    }

    /// Sends in order, in batches, retrying transient failures with backoff until
    /// `deadline`. Never writes the fallback itself.
    pub async fn send_all(&self, messages: Vec<Message>, deadline: Instant) -> Outcome {
        let mut outcome = Outcome::default();
        let mut pending: Vec<Pending> = messages
            .into_iter()
            .map(|message| Pending {
                message,
                last: None,
                stored: false,
            })
            .collect();
        loop {
            outcome.attempts += 1;
            let mut retry = Vec::new();
            let mut batch = Vec::new();
            for p in pending {
                if batch_full(&batch, &p.message) {
                    self.send_round(
                        std::mem::take(&mut batch),
                        deadline,
                        &mut outcome,
                        &mut retry,
                    )
                    .await;
                }
                batch.push(p);
            }
            if !batch.is_empty() {
                self.send_round(batch, deadline, &mut outcome, &mut retry)
                    .await;
            }
            if retry.is_empty() {
                return outcome;
            }
            let delay = self.backoff.delay(outcome.attempts - 1, jitter_unit());
            if Instant::now() + delay + MIN_ATTEMPT >= deadline {
                let attempts = outcome.attempts;
                outcome.undelivered.extend(retry.into_iter().map(|p| {
                    let last = p
                        .last
                        .map_or_else(|| "not sent".to_owned(), |f| f.reason().to_owned());
                    let reason =
                        format!("time budget spent after {attempts} attempts; last: {last}");
                    (p.message, Failure::Transient(reason))
                }));
                return outcome;
            }
            warn!(
                messages = retry.len(),
                attempt = outcome.attempts,
                delay_ms = delay.as_millis() as u64,
                "retrying"
            );
            tokio::time::sleep(delay).await;
            pending = retry;
        }
    }

    /// One SendMessageBatch call; sorts its messages into queued, to retry, or undelivered.
    async fn send_round(
        &self,
        batch: Vec<Pending>,
        deadline: Instant,
        outcome: &mut Outcome,
        retry: &mut Vec<Pending>,
    ) {
        // Claim checks first: a pointer is only queued once its envelope is stored, and an
        // envelope is stored once; a retry after SQS failed re-sends only the pointer.
        let mut ready = Vec::with_capacity(batch.len());
        for mut p in batch {
            if !p.stored {
                match self.store_claim(&p.message, deadline).await {
                    Ok(()) => p.stored = true,
                    Err(f @ Failure::Transient(_)) => {
                        retry.push(Pending { last: Some(f), ..p });
                        continue;
                    }
                    Err(f @ Failure::Permanent(_)) => {
                        outcome.undelivered.push((p.message, f));
                        continue;
                    }
                }
            }
            ready.push(p);
        }
        if ready.is_empty() {
            return;
        }
        let batch = ready;
        let left = deadline.saturating_duration_since(Instant::now());
        let result = if left < MIN_ATTEMPT {
            Err(Failure::Transient(
                "no time left for another attempt".into(),
            ))
        } else {
            match tokio::time::timeout(left.min(ATTEMPT_TIMEOUT), self.send_batch(&batch)).await {
                Ok(result) => result,
                Err(_) => Err(classify(Attempt::NoAnswer, "no answer in time")),
            }
        };
        match result {
            Ok(refused) => {
                let mut refused: HashMap<usize, Failure> = refused.into_iter().collect();
                for (i, p) in batch.into_iter().enumerate() {
                    match refused.remove(&i) {
                        None => outcome.queued += 1,
                        Some(f @ Failure::Transient(_)) => {
                            retry.push(Pending { last: Some(f), ..p })
                        }
                        Some(f @ Failure::Permanent(_)) => outcome.undelivered.push((p.message, f)),
                    }
                }
            }
            Err(f @ Failure::Transient(_)) => {
                retry.extend(batch.into_iter().map(|p| Pending {
                    last: Some(f.clone()),
                    ..p
                }));
            }
            Err(f @ Failure::Permanent(_)) => {
                error!(reason = f.reason(), "SQS refused the batch for good");
                outcome
                    .undelivered
                    .extend(batch.into_iter().map(|p| (p.message, f.clone())));
            }
        }
    }

    /// Stores the envelope of a claim check (if the message is one) in S3.
    async fn store_claim(&self, message: &Message, deadline: Instant) -> Result<(), Failure> {
        let Some(claim) = &message.claim else {
            return Ok(());
        };
        let Some(store) = &self.store else {
            return Err(Failure::Permanent("no payload store configured".into()));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left < MIN_ATTEMPT {
            return Err(Failure::Transient(
                "no time left for another attempt".into(),
            ));
        }
        tokio::time::timeout(left.min(ATTEMPT_TIMEOUT), store.put(claim))
            .await
            .unwrap_or_else(|_| Err(classify(Attempt::NoAnswer, "S3: no answer in time")))
    }

    /// Ok holds the entries SQS refused one by one (by position in `batch`).
    async fn send_batch(&self, batch: &[Pending]) -> Result<Vec<(usize, Failure)>, Failure> {
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, p)| entry(i, &p.message))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| classify(Attempt::NotSent, format!("building the request: {e}")))?;
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| classify_sdk_error("SQS", &e))?;
        Ok(output
            .failed()
            .iter()
            .filter_map(|f| {
                let index = f.id().parse::<usize>().ok()?;
                let attempt = Attempt::Entry {
                    sender_fault: f.sender_fault(),
                    code: f.code(),
                };
                Some((
                    index,
                    classify(attempt, format!("SQS refused the message: {}", f.code())),
                ))
            })
            .collect())
    }
}

/// Classifies an AWS SDK error for the retry policy; `service` prefixes the detail. Serves
/// SQS and S3 alike (their SDKs share these types).
pub(crate) fn classify_sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    service: &str,
    err: &SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> Failure {
    let detail = format!(
        "{service}: {}",
        aws_sdk_sqs::error::DisplayErrorContext(err)
    );
    let attempt = match err {
        SdkError::ConstructionFailure(_) => Attempt::NotSent,
        SdkError::ServiceError(service) => Attempt::Answer {
            status: service.raw().status().as_u16(),
            code: service.err().code(),
        },
        // Time-outs, refused or broken connections, unreadable answers.
        _ => Attempt::NoAnswer,
    };
    classify(attempt, detail)
}

/// A message still to send, with what its last attempt said.
struct Pending {
    message: Message,
    last: Option<Failure>,
    /// Its claim-check envelope, if any, is in S3 already.
    stored: bool,
}

fn batch_full(batch: &[Pending], next: &Message) -> bool {
    let size: usize = batch.iter().map(|p| p.message.sqs_size()).sum();
    !batch.is_empty()
        && (batch.len() == MAX_BATCH_ENTRIES || size + next.sqs_size() > SQS_MAX_MESSAGE_BYTES)
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

impl SqsQueue {
    /// Writes each message as undelivered lines (see `fallback`), one write per message so
    /// that lines from concurrent sends never interleave.
    fn write_fallback(&self, undelivered: &[(Message, Failure)]) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for (message, failure) in undelivered {
            error!(
                id = %message.id,
                reason = failure.reason(),
                "event acknowledged but not queued: written to the fallback log"
            );
            let mut text = fallback::lines(message, failure.reason(), now_ms).join("\n");
            text.push('\n');
            (self.fallback)(&text);
        }
    }
}

fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    // Nowhere further to fall back to if standard output itself fails.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
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
            claim: None,
        }
    }

    fn batches(sizes: &[usize]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut batch: Vec<Pending> = Vec::new();
        for &s in sizes {
            let m = message(s);
            if batch_full(&batch, &m) {
                out.push(batch.len());
                batch.clear();
            }
            batch.push(Pending {
                message: m,
                last: None,
                stored: false,
            });
        }
        if !batch.is_empty() {
            out.push(batch.len());
        }
        out
    }

    #[test]
    fn batches_respect_count_and_size() {
        assert_eq!(batches(&[]), Vec::<usize>::new());
        assert_eq!(batches(&[10; 23]), [10, 10, 3]);
        let half = SQS_MAX_MESSAGE_BYTES / 2;
        assert_eq!(batches(&[half; 3]), [2, 1]);
        assert_eq!(batches(&[half + 1; 3]), [1, 1, 1]);
    }
}
