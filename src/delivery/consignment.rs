//! The messages of one acknowledged request, owned until SQS confirms each of them.

use std::io::Write;
use std::sync::Arc;

use thiserror::Error;
use tokio::time::Instant;
use tracing::{debug, error};

use super::send::{Pending, send_all};
use super::transport::Transport;
use crate::envelope::Message;
use crate::fallback;
use crate::metrics::{self, Unit};
use crate::retry::{Backoff, jitter_unit};

/// Where undelivered lines go: standard output (CloudWatch Logs) unless a test says otherwise.
pub type FallbackSink = Arc<dyn Fn(&str) + Send + Sync>;

pub fn stdout_sink() -> FallbackSink {
    Arc::new(write_stdout)
}

#[derive(Debug, Error)]
#[error("{failed} of {total} messages not queued: {reason}")]
pub struct QueueError {
    pub failed: usize,
    pub total: usize,
    pub reason: String,
}

/// Every message not yet confirmed by SQS. Whatever ends its life (a finished send, a
/// deadline, a panic, a cancelled task, the process shutting down its runtime), what is
/// still unconfirmed is written to the fallback log: an acknowledged event never vanishes.
pub struct Consignment {
    pending: Vec<Pending>,
    total: usize,
    claim_checks: usize,
    /// Rounds of calls made (0 until a send ran).
    attempts: u32,
    started: std::time::Instant,
    sink: FallbackSink,
    /// The line the send's metrics are written in, with the request's.
    report: Option<Box<metrics::Document>>,
}

impl Consignment {
    pub fn new(messages: Vec<Message>, sink: FallbackSink) -> Self {
        Self {
            total: messages.len(),
            claim_checks: messages.iter().filter(|m| m.claim.is_some()).count(),
            attempts: 0,
            started: std::time::Instant::now(),
            pending: messages.into_iter().map(Pending::new).collect(),
            sink,
            report: None,
        }
    }

    /// Writes the send's metrics in `request`'s line (the request's metrics and
    /// properties) when the send ends: one line for the whole delivery.
    pub fn reporting_in(mut self, request: metrics::Document) -> Self {
        self.report = Some(Box::new(request));
        self
    }

    /// How many messages it holds, confirmed or not.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Sends every message before `deadline`; what SQS has not confirmed by then goes to the
    /// fallback log. Errs if anything did.
    pub async fn deliver<T: Transport>(
        mut self,
        transport: &T,
        deadline: Instant,
        backoff: Backoff,
    ) -> Result<(), QueueError> {
        let stats = send_all(transport, &mut self.pending, deadline, backoff, jitter_unit).await;
        self.attempts = stats.attempts;
        if self.pending.is_empty() {
            debug!(messages = self.total, attempts = stats.attempts, "queued");
            self.report(0);
            return Ok(());
        }
        Err(self.keep(None))
    }

    /// Sends nothing: every message goes to the fallback log, `why` being the reason.
    pub fn abandon(mut self, why: &str) -> QueueError {
        self.keep(Some(why))
    }

    /// Writes what is unconfirmed to the fallback log, one write per message so that lines
    /// from concurrent sends never interleave, and empties the consignment.
    fn keep(&mut self, why: Option<&str>) -> QueueError {
        let now_ms = crate::clock::now_ms();
        self.pending.retain(|p| !p.confirmed());
        let failed = self.pending.len();
        let mut first = None;
        for p in self.pending.drain(..) {
            let reason = match why {
                Some(why) => format!("{why}; last: {}", p.reason()),
                None => p.reason().to_owned(),
            };
            error!(
                id = %p.message.id,
                reason = %reason,
                "event acknowledged but not queued: written to the fallback log"
            );
            match fallback::lines(&p.message, &reason, now_ms) {
                Ok(lines) => {
                    let mut text = lines.join("\n");
                    text.push('\n');
                    (self.sink)(&text);
                }
                // Never seen: strings and numbers always serialise. Said, not panicked on.
                Err(e) => error!(
                    id = %p.message.id,
                    error = %e,
                    "the fallback line could not be written"
                ),
            }
            first.get_or_insert(reason);
        }
        self.report(failed);
        QueueError {
            failed,
            total: self.total,
            reason: first.unwrap_or_default(),
        }
    }

    /// The send's metrics line, written as it ends (before the environment may freeze).
    fn report(&mut self, undelivered: usize) {
        let mut doc = self
            .report
            .take()
            .map_or_else(metrics::document, |doc| *doc);
        // Zeros are left out (an absent count is no data, which the alarms treat as fine):
        // the line is billed by the byte, once per delivery.
        let retries = self.attempts.saturating_sub(1);
        let latency_ms = (self.started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
        doc.add("Queued", Unit::Count, (self.total - undelivered) as f64);
        for (name, n) in [
            ("Undelivered", undelivered),
            ("SendRetries", retries as usize),
            ("ClaimChecks", self.claim_checks),
        ] {
            if n > 0 {
                doc.add(name, Unit::Count, n as f64);
            }
        }
        doc.add("SendLatency", Unit::Milliseconds, latency_ms)
            .emit();
    }
}

impl Drop for Consignment {
    fn drop(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let why = if std::thread::panicking() {
            "the send panicked before SQS confirmed the message"
        } else {
            "the send was stopped (deadline, cancellation or shutdown) before SQS confirmed the message"
        };
        self.keep(Some(why));
    }
}

fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    // Nowhere further to fall back to if standard output itself fails.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
